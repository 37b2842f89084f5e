"""HTTP routes of outbound webhooks (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from app.deps import AdminKey, SessionDep, query_model, query_openapi
from app.subscriptions import service
from app.subscriptions.schemas import (
    DeliveriesOut,
    DeliveriesQuery,
    RedriveOut,
    SubscriptionIn,
    SubscriptionOut,
)

router = APIRouter(tags=["subscriptions"], dependencies=[AdminKey])
SubscriptionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/subscriptions", status_code=status.HTTP_201_CREATED)
def create_subscription(body: SubscriptionIn, session: SessionDep) -> SubscriptionOut:
    """Subscribe a URL to customer changes (signed POSTs; the secret is never shown again)."""
    return service.create(session, body)


@router.get("/subscriptions")
def list_subscriptions(session: SessionDep) -> list[SubscriptionOut]:
    """Every subscription with its deliveries counted by status."""
    return service.list_all(session)


@router.delete("/subscriptions/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_subscription(subscription_id: SubscriptionId, session: SessionDep) -> Response:
    """Delete a subscription and its deliveries (pending ones are not sent)."""
    service.delete(session, subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/subscriptions/{subscription_id}/deliveries", openapi_extra=query_openapi(DeliveriesQuery)
)
def list_deliveries(
    subscription_id: SubscriptionId,
    session: SessionDep,
    q: Annotated[DeliveriesQuery, Depends(query_model(DeliveriesQuery))],
) -> DeliveriesOut:
    """A page of a subscription's deliveries in delivery order, by status."""
    return service.deliveries(session, subscription_id, q)


@router.post("/subscriptions/{subscription_id}/deliveries/redrive")
def redrive_deliveries(
    subscription_id: SubscriptionId,
    session: SessionDep,
    delivery_id: Annotated[
        int | None, Query(ge=1, le=2**62, description="Only this dead delivery")
    ] = None,
) -> RedriveOut:
    """Send dead deliveries again: pending, attempts reset, due at once."""
    return RedriveOut(redriven=service.redrive(session, subscription_id, delivery_id))

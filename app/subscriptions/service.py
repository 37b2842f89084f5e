"""Outbound webhooks: subscriptions, their deliveries, and the changes published at retrain."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import NotFound
from app.ml.segmentation import SegmentAssignment
from app.subscriptions import repository
from app.subscriptions.models import CustomerState, Subscription
from app.subscriptions.schemas import (
    DeliveriesOut,
    DeliveriesQuery,
    DeliveryOut,
    SubscriptionIn,
    SubscriptionOut,
)


def _out(session: Session, row: Subscription) -> SubscriptionOut:
    out = SubscriptionOut.model_validate(row)
    out.deliveries = repository.count_by_status(session, row.id)
    return out


def create(session: Session, body: SubscriptionIn) -> SubscriptionOut:
    """Store a subscription; changes found from the next retrain on are delivered to it."""
    row = repository.add_subscription(session, body.url, list(body.events), body.secret)
    return _out(session, row)


def list_all(session: Session) -> list[SubscriptionOut]:
    """Every subscription with its delivery counts."""
    return [_out(session, row) for row in repository.subscriptions(session)]


def get_or_404(session: Session, subscription_id: int) -> Subscription:
    """The subscription, or NotFound."""
    row = repository.get_subscription(session, subscription_id)
    if row is None:
        raise NotFound(f"subscription {subscription_id} does not exist")
    return row


def delete(session: Session, subscription_id: int) -> None:
    """Delete a subscription; its deliveries, pending ones included, go with it."""
    repository.delete_subscription(session, get_or_404(session, subscription_id))


def deliveries(session: Session, subscription_id: int, q: DeliveriesQuery) -> DeliveriesOut:
    """A page of a subscription's deliveries in delivery order."""
    get_or_404(session, subscription_id)
    rows = repository.deliveries(session, subscription_id, q.status, q.after, q.limit)
    page = [DeliveryOut.model_validate(row) for row in rows]
    return DeliveriesOut(deliveries=page, next_after=page[-1].id if len(page) == q.limit else None)


def redrive(session: Session, subscription_id: int, delivery_id: int | None) -> int:
    """Make dead deliveries pending again with their attempts reset; how many."""
    get_or_404(session, subscription_id)
    count = repository.redrive(session, subscription_id, delivery_id, utcnow())
    if delivery_id is not None and count == 0:
        raise NotFound(f"subscription {subscription_id} has no dead delivery {delivery_id}")
    return count


@dataclass(frozen=True)
class Published:
    """What subscribers know of one customer."""

    segment_id: int | None
    segment_label: str | None
    rfm_group: str | None
    churn_risk: str | None

    @classmethod
    def of(cls, row: CustomerState | None) -> Published:
        """The state stored in `row` (all None for a customer never published)."""
        if row is None:
            return cls(None, None, None, None)
        return cls(row.segment_id, row.segment_label, row.rfm_group, row.churn_risk)


def changes(old: Published, new: Published, p_alive: float | None) -> list[tuple[str, dict]]:
    """The events that take subscribers from `old` to `new`, in the order they happen."""
    found: list[tuple[str, dict[str, Any]]] = []
    if old.segment_id != new.segment_id:
        if old.segment_id is not None:
            segment = {"id": old.segment_id, "label": old.segment_label}
            found.append(("segment.exited", {"segment": segment}))
        if new.segment_id is not None:
            segment = {"id": new.segment_id, "label": new.segment_label}
            found.append(("segment.entered", {"segment": segment}))
    if old.rfm_group != new.rfm_group:
        found.append(("rfm_group.changed", {"from": old.rfm_group, "to": new.rfm_group}))
    if old.churn_risk != new.churn_risk:
        change = {"from": old.churn_risk, "to": new.churn_risk, "p_alive": p_alive}
        found.append(("churn_risk.changed", change))
    return found


def delivery(
    subscription_id: int, user_id: str, kind: str, data: dict, version: int, now: datetime
) -> dict[str, Any]:
    """An outbox row for one event to one subscription; its payload is what is POSTed."""
    event_id = secrets.token_hex(16)
    payload = {
        "event_id": event_id,
        "type": kind,
        "occurred_at": now.isoformat(),
        "user_id": user_id,
        "model_version": version,
        "data": data,
    }
    return {
        "event_id": event_id,
        "subscription_id": subscription_id,
        "user_id": user_id,
        "type": kind,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


#: A customer's state as assigned now, and their P(alive) (None when unknown).
Assigned = tuple[Published, float | None]
#: The live assignment of some customers with the serving model: (its version, by user id), or
#: None while this worker cannot assign (no model, or not yet the active one).
Evaluate = Callable[[Session, list[str]], tuple[int, dict[str, Assigned]] | None]


def _assigned(assignment: SegmentAssignment, i: int) -> Assigned:
    p_alive = float(assignment.value.p_alive[i])
    state = Published(
        segment_id=int(assignment.segment_id[i]),
        segment_label=str(assignment.label[i]),
        rfm_group=str(assignment.rfm_group[i]) or None,
        churn_risk=str(assignment.value.churn_risk[i]) or None,
    )
    return state, None if math.isnan(p_alive) else round(p_alive, 6)


def _publish(
    session: Session,
    version: int,
    assigned: dict[str, Assigned],
    known: dict[str, CustomerState],
    listeners: list[tuple[int, set[str]]],
) -> int:
    """Write an outbox row per listening subscription for every change from `known` to
    `assigned`, and store the new states; how many rows."""
    now = utcnow()
    fresh: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    for user_id, (new, p_alive) in assigned.items():
        row = known.get(user_id)
        found = changes(Published.of(row), new, p_alive)
        if not found:
            continue
        state = {"user_id": user_id, "model_version": version, **new.__dict__}
        (fresh if row is None else changed).append(state)
        for kind, data in found:
            outbox.extend(
                delivery(sid, user_id, kind, data, version, now)
                for sid, events in listeners
                if kind in events
            )
    repository.save_states(session, fresh, changed)
    repository.add_outbox(session, outbox)
    return len(outbox)


def _listeners(session: Session) -> list[tuple[int, set[str]]]:
    return [(row.id, set(row.events)) for row in repository.subscriptions(session)]


def publish_retrain(session: Session, version: int, assignment: SegmentAssignment | None) -> int:
    """Write, in the caller's transaction (the one activating `version`), an outbox row per
    subscription for every change of a customer's segment, RFM group or churn risk since what
    was last published, and remember the new state. How many rows; nothing at all (not even a
    state) without a subscription."""
    listeners = _listeners(session)
    if assignment is None or not listeners:
        return 0
    repository.lock_states(session)
    present = repository.existing_users(session)
    assigned = {
        user_id: _assigned(assignment, i)
        for i, user_id in enumerate(assignment.user_ids)
        if user_id in present
    }
    return _publish(session, version, assigned, repository.customer_states(session), listeners)


def publish_ingested(session: Session, evaluate: Evaluate, limit: int = 200) -> int:
    """Publish the changes of customers an ingest noted, assigned live as GET /segment does;
    in one transaction with forgetting the notes. How many outbox rows."""
    upto, user_ids = repository.changed_users(session, limit)
    if not user_ids:
        return 0
    found = evaluate(session, user_ids)
    if found is None:
        return 0  # the notes stay until this worker can assign
    version, assigned = found
    repository.clear_changes(session, upto, user_ids)  # a write first: SQLite's lock is ours
    repository.lock_states(session)
    known = repository.states_of(session, user_ids)
    # A retrain published a newer model's states meanwhile: note them again for that model.
    newer = sorted(u for u, row in known.items() if row.model_version > version)
    repository.mark_changed(session, newer)
    for user_id in newer:
        assigned.pop(user_id, None)
    return _publish(session, version, assigned, known, _listeners(session))

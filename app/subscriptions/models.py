"""The tables of outbound webhooks: subscriptions, the outbox, the last published customer
state and the dispatcher's lease."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, utcnow

#: The changes a subscription may listen to.
EventType = Literal["segment.entered", "segment.exited", "rfm_group.changed", "churn_risk.changed"]
EVENT_TYPES: tuple[EventType, ...] = (
    "segment.entered",
    "segment.exited",
    "rfm_group.changed",
    "churn_risk.changed",
)
#: A delivery's life: pending until the receiver answers 2xx, dead after too many failures.
DeliveryStatus = Literal["pending", "delivered", "dead"]


class Subscription(Base):
    """A receiver: where to POST, which changes, and the secret its deliveries are signed with."""

    __tablename__ = "subscription"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSONType)
    secret: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Outbox(Base):
    """One change to deliver to one subscription; its id is the delivery order."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The dispatcher's look-ups: what is due, and the oldest pending row per customer.
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_subscription_id_user_id", "subscription_id", "user_id", "status"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(32), unique=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[DeliveryStatus] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class CustomerState(Base):
    """What was last published of a customer: the state the next change is found against."""

    __tablename__ = "customer_state"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    segment_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    segment_label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    rfm_group: Mapped[str | None] = mapped_column(String(64), nullable=True)
    churn_risk: Mapped[str | None] = mapped_column(String(16), nullable=True)
    model_version: Mapped[int] = mapped_column(Integer)


class DispatcherLease(Base):
    """Who delivers: one dispatcher across every replica, until its lease expires.

    `generation` grows each time the lease changes hands: a dispatcher records what it sent
    only while the lease still has its holder and generation (a fencing token), so one that
    lost the lease, even for a moment, cannot advance anything the next holder now owns.
    """

    __tablename__ = "dispatcher_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class CustomerChange(Base):
    """A customer whose events changed since their state was last published: written in the
    ingest's transaction, and worked off by the dispatcher with the live assignment."""

    __tablename__ = "customer_change"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)

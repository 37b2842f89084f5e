"""SQL of outbound webhooks: subscriptions, the outbox, customer states and the lease."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    case,
    column,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.orm import Session, aliased

from app.subscriptions.models import (
    CustomerChange,
    CustomerState,
    DeliveryStatus,
    DispatcherLease,
    Outbox,
    Subscription,
)


def any_subscription(session: Session) -> bool:
    """Whether at least one subscription exists (producers do nothing otherwise)."""
    return bool(session.scalar(select(exists().where(Subscription.id.is_not(None)))))


def add_subscription(session: Session, url: str, events: list[str], secret: str) -> Subscription:
    """Store a new subscription."""
    row = Subscription(url=url, events=events, secret=secret)
    session.add(row)
    session.flush()
    return row


def subscriptions(session: Session) -> Sequence[Subscription]:
    """Every subscription, oldest first."""
    return session.scalars(select(Subscription).order_by(Subscription.id)).all()


def get_subscription(session: Session, subscription_id: int) -> Subscription | None:
    """One subscription, or None."""
    return session.get(Subscription, subscription_id)


def delete_subscription(session: Session, row: Subscription) -> None:
    """Delete a subscription and, explicitly (SQLite may run without cascades), its deliveries."""
    session.execute(delete(Outbox).where(Outbox.subscription_id == row.id))
    session.execute(delete(Subscription).where(Subscription.id == row.id))


def customer_states(session: Session) -> dict[str, CustomerState]:
    """The last published state of every customer, by user id."""
    return {row.user_id: row for row in session.scalars(select(CustomerState))}


def save_states(
    session: Session, fresh: list[dict[str, Any]], changed: list[dict[str, Any]]
) -> None:
    """Insert the states of customers published for the first time; update the others."""
    if fresh:
        session.execute(insert(CustomerState), fresh)
    if changed:
        session.execute(update(CustomerState), changed)


def add_outbox(session: Session, rows: list[dict[str, Any]]) -> None:
    """Append deliveries to the outbox, in the order given (their ids are the delivery order)."""
    if rows:
        session.execute(insert(Outbox), rows)


def deliveries(
    session: Session,
    subscription_id: int,
    status: DeliveryStatus | None,
    after_id: int | None,
    limit: int,
) -> Sequence[Outbox]:
    """A page of a subscription's deliveries by id, after `after_id`."""
    query = select(Outbox).where(Outbox.subscription_id == subscription_id)
    if status is not None:
        query = query.where(Outbox.status == status)
    if after_id is not None:
        query = query.where(Outbox.id > after_id)
    return session.scalars(query.order_by(Outbox.id).limit(limit)).all()


def redrive(session: Session, subscription_id: int, delivery_id: int | None, now: datetime) -> int:
    """Make a subscription's dead deliveries (or one of them) pending again; how many."""
    query = (
        update(Outbox)
        .where(Outbox.subscription_id == subscription_id, Outbox.status == "dead")
        .values(status="pending", attempts=0, next_attempt_at=now)
    )
    if delivery_id is not None:
        query = query.where(Outbox.id == delivery_id)
    return int(session.execute(query).rowcount)  # type: ignore[attr-defined]


def due(session: Session, now: datetime, limit: int) -> Sequence[tuple[Outbox, Subscription]]:
    """Deliveries due now, each the oldest pending one of its (subscription, customer)."""
    older = aliased(Outbox)
    first = ~exists().where(
        older.subscription_id == Outbox.subscription_id,
        older.user_id == Outbox.user_id,
        older.status == "pending",
        older.id < Outbox.id,
    )
    rows = session.execute(
        select(Outbox, Subscription)
        .join(Subscription, Subscription.id == Outbox.subscription_id)
        .where(Outbox.status == "pending", Outbox.next_attempt_at <= now, first)
        .order_by(Outbox.id)
        .limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]


def get_delivery(session: Session, delivery_id: int) -> Outbox | None:
    """One delivery, or None (its subscription or customer was deleted meanwhile)."""
    return session.get(Outbox, delivery_id)


def count_by_status(session: Session, subscription_id: int) -> dict[str, int]:
    """How many deliveries of a subscription are in each status."""
    rows = session.execute(
        select(Outbox.status, func.count())
        .where(Outbox.subscription_id == subscription_id)
        .group_by(Outbox.status)
    ).all()
    return {status: int(n) for status, n in rows}


def take_lease(
    session: Session, name: str, holder: str, now: datetime, seconds: float
) -> int | None:
    """Take or renew the lease `name` for `holder` unless another holder's is still valid; the
    lease's generation if `holder` has it now, else None.

    One conditional UPDATE decides, so two dispatchers never both win; the generation grows when
    the lease changes hands (a renewal keeps it). The row is created on first use (a concurrent
    creator loses on the primary key).
    """
    until = now + timedelta(seconds=seconds)
    mine = DispatcherLease.holder == holder
    taken = session.execute(
        update(DispatcherLease)
        .where(DispatcherLease.name == name, or_(mine, DispatcherLease.expires_at < now))
        .values(
            holder=holder,
            expires_at=until,
            generation=case(
                (mine, DispatcherLease.generation), else_=DispatcherLease.generation + 1
            ),
        )
    ).rowcount  # type: ignore[attr-defined]
    if taken:
        return session.scalar(
            select(DispatcherLease.generation).where(DispatcherLease.name == name)
        )
    if session.get(DispatcherLease, name) is not None:
        return None
    # A concurrent creator makes this flush raise IntegrityError: the caller has lost.
    session.add(DispatcherLease(name=name, holder=holder, expires_at=until, generation=1))
    session.flush()
    return 1


def _held(name: str, holder: str, generation: int) -> Any:
    return and_(
        DispatcherLease.name == name,
        DispatcherLease.holder == holder,
        DispatcherLease.generation == generation,
    )


def renew_lease(
    session: Session, name: str, holder: str, generation: int, now: datetime, seconds: float
) -> bool:
    """Extend the lease if `holder` still has it in `generation`; whether it does."""
    until = now + timedelta(seconds=seconds)
    query = update(DispatcherLease).where(_held(name, holder, generation)).values(expires_at=until)
    return bool(session.execute(query).rowcount)  # type: ignore[attr-defined]


def hold_lease(session: Session, name: str, holder: str, generation: int) -> bool:
    """Whether `holder` still has the lease in `generation`, and keep it so until the caller's
    transaction ends: the fence before a dispatcher takes or records deliveries.

    An UPDATE that changes nothing, for its lock: PostgreSQL's row lock makes a takeover wait
    for this transaction (or, committed first, fail this check); SQLite's write lock does the
    same for the whole store.
    """
    query = (
        update(DispatcherLease)
        .where(_held(name, holder, generation))
        .values(generation=DispatcherLease.generation)
    )
    return bool(session.execute(query).rowcount)  # type: ignore[attr-defined]


def release_lease(session: Session, name: str, holder: str, now: datetime) -> None:
    """Give the lease up at once (a stopping dispatcher), if `holder` has it."""
    session.execute(
        update(DispatcherLease)
        .where(and_(DispatcherLease.name == name, DispatcherLease.holder == holder))
        .values(expires_at=now)
    )


def forget_customer(session: Session, user_id: str) -> None:
    """Delete a customer's deliveries and published state (an erasure)."""
    session.execute(delete(Outbox).where(Outbox.user_id == user_id))
    session.execute(delete(CustomerState).where(CustomerState.user_id == user_id))
    session.execute(delete(CustomerChange).where(CustomerChange.user_id == user_id))


# The customers' table, named here rather than imported: the events domain imports this one.
_USER = table("user", column("id"))


def existing_users(session: Session) -> set[str]:
    """The ids of every customer still in the store (an erasure may race a retrain)."""
    return set(session.scalars(select(_USER.c.id)))


def mark_changed(session: Session, user_ids: list[str]) -> None:
    """Note, in the caller's transaction, customers whose state may have changed (an ingest),
    when anyone subscribes; shops without subscriptions pay one cheap read."""
    if user_ids and any_subscription(session):
        session.execute(insert(CustomerChange), [{"user_id": u} for u in user_ids])


def changed_users(session: Session, limit: int) -> tuple[int, list[str]]:
    """The highest change id and the customers of the oldest `limit` changes."""
    rows = session.execute(
        select(CustomerChange.id, CustomerChange.user_id).order_by(CustomerChange.id).limit(limit)
    ).all()
    if not rows:
        return 0, []
    return int(rows[-1][0]), sorted({user_id for _, user_id in rows})


def clear_changes(session: Session, upto: int, user_ids: list[str]) -> None:
    """Forget the changes of `user_ids` up to id `upto` (they are being published)."""
    session.execute(
        delete(CustomerChange).where(
            CustomerChange.id <= upto, CustomerChange.user_id.in_(user_ids)
        )
    )


def lock_states(session: Session) -> None:
    """Serialise the writers of customer states until the transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite has one writer at a time, and each
    caller has written before it reads the states, so it holds the lock already.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7316)"))


def states_of(session: Session, user_ids: list[str]) -> dict[str, CustomerState]:
    """The last published state of some customers, by user id."""
    rows = session.scalars(select(CustomerState).where(CustomerState.user_id.in_(user_ids)))
    return {row.user_id: row for row in rows}

"""Every table, imported once so that `Base.metadata` is complete (Alembic, tests)."""

from app.catalog.models import Item
from app.customers.models import Erasure, UserMerge
from app.db import Base
from app.events.models import Event, IngestChange, User
from app.exports.models import ExportJob
from app.security.models import ApiKey
from app.subscriptions.models import (
    CustomerChange,
    CustomerState,
    DispatcherLease,
    Outbox,
    Subscription,
)
from app.training.models import ModelVersion, StoreIdentity, TrainingRun

__all__ = [
    "ApiKey",
    "Base",
    "CustomerChange",
    "CustomerState",
    "DispatcherLease",
    "Erasure",
    "Event",
    "ExportJob",
    "IngestChange",
    "Item",
    "ModelVersion",
    "Outbox",
    "StoreIdentity",
    "Subscription",
    "TrainingRun",
    "User",
    "UserMerge",
]

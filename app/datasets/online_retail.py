"""Streaming reader of the UCI Online Retail transactions (stdlib csv, .csv or .csv.xz).

Columns: ``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
Country``. Rows are cleaned the way a shop's import must clean them and every dropped row is
counted by reason.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.datasets.files import CountingFile, open_text
from app.ml.interactions import Catalog, EventLog

COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
DROP_REASONS = (
    "malformed",
    "no_customer",
    "cancellation",
    "non_positive_quantity",
    "non_positive_price",
    "non_product_code",
    "duplicate_row",
)
# Postage, fees, discounts, manual adjustments, samples and vouchers: not things to recommend.
NON_PRODUCT_CODES = frozenset(
    {"POST", "DOT", "M", "D", "C2", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS"}
)
NON_PRODUCT_PREFIXES = ("GIFT_",)


@dataclass(frozen=True, slots=True)
class OnlineRetailRow:
    """One clean purchase line of an invoice."""

    event_id: str
    user_id: str
    item_id: str
    description: str
    quantity: int
    unit_price: float
    value: float
    invoice: str
    occurred_at: datetime
    country: str


def is_non_product_code(stock_code: str) -> bool:
    """Return True for postage, fees, adjustments, samples and vouchers."""
    code = stock_code.strip().upper()
    if code in NON_PRODUCT_CODES or code.startswith(NON_PRODUCT_PREFIXES):
        return True
    return not any(ch.isdigit() for ch in code)


def row_event_id(fields: Iterable[str]) -> str:
    """Return a deterministic event id from a row's raw fields (same row -> same id)."""
    digest = hashlib.sha256("\x1f".join(f.strip() for f in fields).encode("utf-8")).hexdigest()
    return f"or-{digest[:32]}"


def _customer_id(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    # CustomerID is written as a float ("17850.0"); the shop's id is the integer.
    number = float(raw)
    if number != number or number <= 0:
        return None
    return str(int(number)) if number.is_integer() else raw


class OnlineRetailReader:
    """Iterable of clean :class:`OnlineRetailRow`; counts dropped rows by reason.

    After a full iteration ``kept`` is the number of rows yielded and ``dropped`` counts every
    other row under one of :data:`DROP_REASONS`. Iterating again re-reads the file and resets
    both.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.dropped: Counter[str] = Counter()
        self.kept = 0
        self._counter: CountingFile | None = None

    @property
    def bytes_read(self) -> int:
        """Bytes of the file read so far (of ``path.stat().st_size``)."""
        return self._counter.bytes_read if self._counter is not None else 0

    def __iter__(self) -> Iterator[OnlineRetailRow]:
        self.dropped = Counter()
        self.kept = 0
        if not self.path.exists():
            raise FileNotFoundError(f"Online Retail file not found: {self.path}")
        seen: set[str] = set()
        dates: dict[str, datetime] = {}
        handle, self._counter = open_text(self.path, errors="replace")
        with handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return
            header = [h.strip().lstrip("\ufeff") for h in header]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ValueError(f"{self.path}: missing columns {missing}; found {header}")
            pos = [header.index(c) for c in COLUMNS]
            for raw in reader:
                row = self._parse(raw, pos, seen, dates)
                if row is not None:
                    self.kept += 1
                    yield row

    def _parse(
        self, raw: list[str], pos: list[int], seen: set[str], dates: dict[str, datetime]
    ) -> OnlineRetailRow | None:
        if len(raw) < len(pos):
            self.dropped["malformed"] += 1
            return None
        invoice, code, description, qty, date, price, customer, country = (
            raw[p].strip() for p in pos
        )
        try:
            user = _customer_id(customer)
            quantity = int(float(qty))
            unit_price = float(price)
            occurred_at = dates.get(date)
            if occurred_at is None:
                occurred_at = datetime.fromisoformat(date).replace(tzinfo=UTC)
                if len(dates) > 10_000:
                    dates.clear()
                dates[date] = occurred_at
        except ValueError:
            self.dropped["malformed"] += 1
            return None
        if user is None:
            self.dropped["no_customer"] += 1
            return None
        reason = None
        if invoice.upper().startswith("C"):
            reason = "cancellation"
        elif quantity <= 0:
            reason = "non_positive_quantity"
        elif not unit_price > 0:
            reason = "non_positive_price"
        elif is_non_product_code(code):
            reason = "non_product_code"
        if reason is not None:
            self.dropped[reason] += 1
            return None
        event_id = row_event_id(raw[p] for p in pos)
        if event_id in seen:
            self.dropped["duplicate_row"] += 1
            return None
        seen.add(event_id)
        return OnlineRetailRow(
            event_id=event_id,
            user_id=user,
            item_id=code,
            description=description,
            quantity=quantity,
            unit_price=unit_price,
            value=round(quantity * unit_price, 4),
            invoice=invoice,
            occurred_at=occurred_at,
            country=country,
        )


def read_online_retail(path: str | Path) -> OnlineRetailReader:
    """Open the UCI Online Retail file (.csv or .csv.xz) as a stream of clean purchase rows."""
    return OnlineRetailReader(path)


def to_event_log(rows: Iterable[OnlineRetailRow]) -> tuple[EventLog, Catalog]:
    """Turn purchase rows into an :class:`EventLog` of purchases and the :class:`Catalog`.

    Each item's title is its first non-empty description; ``values`` hold the line amounts and
    ``order_ids`` the invoice numbers.
    """
    users: list[str] = []
    items: list[str] = []
    values: list[float] = []
    times: list[float] = []
    invoices: list[str] = []
    titles: dict[str, str] = {}
    for row in rows:
        users.append(row.user_id)
        items.append(row.item_id)
        values.append(row.value)
        times.append(row.occurred_at.timestamp())
        invoices.append(row.invoice)
        if not titles.get(row.item_id):
            titles[row.item_id] = row.description
    events = EventLog.from_lists(users, items, "purchase", values, times, invoices)
    ids = list(titles)
    catalog = Catalog(
        item_ids=ids,
        titles=[titles[i] for i in ids],
        descriptions=[""] * len(ids),
        categories=[[] for _ in ids],
        available=np.ones(len(ids), dtype=bool),
    )
    return events, catalog

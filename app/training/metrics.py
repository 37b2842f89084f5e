"""Training runs as metrics, read from the store at scrape time.

Runs happen in trainer processes and on any replica; the store holds every one, so a scrape
of any worker reports the same figures without the trainer writing metrics of its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.training import repository


class TrainingRuns(Collector):
    """``tastemaker_training_runs{status}`` and the duration of finished runs by outcome."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def collect(self) -> Iterator[Metric]:
        try:
            with self.factory() as session:
                rows = repository.run_times(session)
        except SQLAlchemyError:
            return  # the store is down: /ready says so; these series are absent meanwhile
        counts: dict[str, int] = defaultdict(int)
        durations: dict[str, list[float]] = defaultdict(list)
        for status, started, finished in rows:
            counts[status] += 1
            if started is not None and finished is not None:
                durations[status].append((finished - started).total_seconds())
        runs = GaugeMetricFamily(
            "tastemaker_training_runs", "Training runs in the store, by status.", labels=["status"]
        )
        for status, count in sorted(counts.items()):
            runs.add_metric([status], count)
        seconds = SummaryMetricFamily(
            "tastemaker_training_run_seconds",
            "Duration of finished training runs (started to finished), by outcome.",
            labels=["status"],
        )
        for status, values in sorted(durations.items()):
            seconds.add_metric([status], count_value=len(values), sum_value=sum(values))
        yield runs
        yield seconds

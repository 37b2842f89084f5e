"""The one settings object: every knob of the service, read from `TASTEMAKER_*` variables."""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.ml.weights import DEFAULT_EVENT_WEIGHTS


class ApiKeySetting(BaseModel):
    """A key given in settings: its name, SHA-256 (hex) and scopes; never the key itself."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Literal["read", "write", "admin"]] = Field(min_length=1)


class TokenSecretSetting(BaseModel):
    """A secret customer tokens are signed with, its key id and the browser origins it serves."""

    model_config = ConfigDict(extra="forbid")

    kid: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    secret: SecretStr = Field(min_length=32, max_length=256)
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins whose pages may present this secret's tokens (none: apps only).",
    )


class Settings(BaseSettings):
    """Service configuration; unsafe combinations fail at start-up with a sentence that says why."""

    model_config = SettingsConfigDict(env_prefix="TASTEMAKER_", env_file=None, extra="ignore")

    data_dir: Path = Field(Path("data"), description="Directory for the embedded SQLite file.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; unset means a SQLite file `tastemaker.db` in data_dir."
    )
    redis_url: str | None = Field(None, description="Redis URL; unset means an in-process cache.")
    model_dir: Path = Field(Path("models"), description="Directory holding model bundles v1, v2…")
    train_engine: Literal["local", "spark"] = Field(
        "local", description="What fits the models: this process, or Spark (the `spark` extra)."
    )
    spark_master: str = Field(
        "local[*]",
        description="The Spark master of the spark engine (local[*], spark://host:7077).",
    )
    bundle_store_url: str | None = Field(
        None,
        description="Where bundles are published for every replica: unset keeps them in "
        "TASTEMAKER_MODEL_DIR; s3://bucket/prefix uses S3-compatible object storage (the "
        "model dir then is this host's cache of it).",
    )
    s3_endpoint_url: str | None = Field(
        None, description="The S3-compatible endpoint of the bundle store (MinIO, say)."
    )

    host: str = Field(
        "127.0.0.1",
        description="Interface `tastemaker serve` binds to (`--host` overrides it for every worker).",
    )
    port: int = Field(8000, ge=1, le=65535, description="Port `tastemaker serve` listens on.")
    workers: int = Field(1, ge=1, le=64, description="Uvicorn worker processes.")
    shutdown_seconds: int = Field(
        20,
        ge=0,
        le=600,
        description=(
            "On SIGTERM or SIGINT, how long `tastemaker serve` lets requests in flight finish "
            "before its workers stop."
        ),
    )
    retrain_schedule_here: bool = Field(
        True,
        description=(
            "Whether this process runs the retrain schedule; `tastemaker serve` keeps it in "
            "worker 0 only, and `false` keeps a replica out of it."
        ),
    )

    event_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EVENT_WEIGHTS),
        description="Accepted event types (JSON list).",
    )
    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
        description=(
            "Weight of each event type in training and serving alike (JSON object); a rating "
            "weighs its type's weight times its value."
        ),
    )
    max_batch_size: int = Field(1000, ge=1, le=10_000, description="Most events/items per batch.")
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest accepted request body, in bytes."
    )
    max_future_seconds: int = Field(
        300, ge=0, description="How far in the future an event's occurred_at may lie."
    )
    max_past_years: int = Field(
        20, ge=1, le=200, description="How far back an event's occurred_at may lie, in years."
    )
    signed_value_types: list[str] = Field(
        default_factory=lambda: ["rating"],
        description="Event types whose value may be negative (JSON list); others need value >= 0.",
    )
    history_length: int = Field(
        200,
        ge=1,
        le=10_000,
        description=(
            "Scoring budget: the most recent events per user a model scores, read into the model "
            "at training (a retrain applies a change). `exclude_seen` always covers the whole "
            "history, whatever the budget."
        ),
    )
    recommender: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Recommender hyper-parameters to pin (JSON object of RecommenderConfig fields, e.g. "
            '{"blend_weights": {"ease": 1, "content": 0.2}, "home_repeat_share": 0.5}; '
            'a model\'s own under its name, e.g. {"item_knn": {"k": 100}}, the previous '
            'release\'s flat "item_knn_k" read too); what is pinned is not tuned. '
            "Checked at start-up."
        ),
    )
    cache_ttl_seconds: int = Field(
        3600, ge=1, description="TTL of every cached answer and history list in Redis."
    )
    local_cache_ttl_seconds: float = Field(
        2.0, ge=0, description="TTL of the per-worker in-process cache tier."
    )
    local_cache_size: int = Field(10_000, ge=0, description="Entries in the per-worker tier.")
    cache_prefix: str = Field(
        "tm:",
        max_length=64,
        description="Prefix of every Redis key (several deployments, one Redis).",
    )
    redis_timeout_seconds: float = Field(
        0.25, gt=0, description="Socket timeout of each Redis call before degrading."
    )
    segment_algorithm: Literal["kmeans", "dbscan"] = Field(
        "kmeans", description="Which clustering labels GET /segment."
    )
    quality_gate_tolerance: float = Field(
        0.02,
        ge=0,
        le=1,
        description="A new model may lose this share of NDCG@10 and still activate.",
    )
    model_poll_seconds: float = Field(
        2.0, gt=0, description="How often each worker checks for a newly active model version."
    )
    api_keys: list[ApiKeySetting] = Field(
        default_factory=list,
        description='Keys as JSON `[{"name", "sha256", "scopes"}]`; add more with `tastemaker keys`.',
    )
    allow_anonymous: bool = Field(
        False, description="Serve without keys on a non-loopback interface (on purpose)."
    )
    rate_limits: dict[str, str] = Field(
        default_factory=lambda: {
            "read": "1000/second",
            "write": "200/second",
            "admin": "20/second",
            "customer": "20/second",
            "customer_address": "200/second",
        },
        description="Requests per key (or client address) and scope, as `N/second|minute|hour`; "
        "customer tokens count per customer id (`customer`) and per address (`customer_address`).",
    )
    rate_limit_storage: Literal["memory", "redis"] = Field(
        "memory",
        description="Count in each worker (no per-request round trip) or exactly across replicas in Redis.",
    )
    auth_failure_limit: str = Field(
        "10/minute",
        description="Failed authentications (bad key, bad webhook signature) per client address; "
        "past it every request of that address answers 429.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to call the API (CORS)."
    )
    token_secrets: list[TokenSecretSetting] = Field(
        default_factory=list,
        description='Customer-token secrets as JSON `[{"kid", "secret", "cors_origins"}]`; the '
        "first signs POST /tokens, every one listed verifies (rotation); unset disables tokens.",
    )
    token_max_ttl_seconds: int = Field(
        3600,
        ge=60,
        le=86400,
        description="The longest a customer token may live; a token expiring later is refused.",
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 secret of POST /webhooks/events; unset disables it."
    )
    webhook_tolerance_seconds: int = Field(
        300, ge=1, le=3600, description="How old a webhook's signed timestamp may be."
    )
    webhook_poll_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often the outbound-webhook dispatcher looks for deliveries that are due.",
    )
    webhook_max_attempts: int = Field(
        12,
        ge=1,
        le=100,
        description="Failed attempts after which an outbound delivery is dead (re-drivable).",
    )
    webhook_backoff_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Outbound retry delay after the first failure; doubled after each "
        "further one, with jitter.",
    )
    webhook_backoff_max_seconds: float = Field(
        600.0, gt=0, le=86400, description="The longest wait between two outbound attempts."
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="How long an outbound delivery waits for the receiver."
    )
    webhook_lease_seconds: float = Field(
        30.0,
        ge=0.5,
        le=3600,
        description="The dispatcher's lease: another replica takes over deliveries when the "
        "holder has not renewed it for this long.",
    )
    trainer_heartbeat_timeout_seconds: float = Field(
        60.0,
        ge=6,  # the trainer beats every 2 s and takes a few seconds to start
        description="A run whose trainer is silent this long is marked failed.",
    )
    retrain_every_minutes: int = Field(
        0, ge=0, description="Retrain on a schedule every N minutes (0 = off)."
    )
    retrain_after_events: int = Field(
        0,
        ge=0,
        description="Retrain once this many events arrived since the active model (0 = off).",
    )
    log_format: Literal["json", "console"] = Field(
        "console", description="Log lines as JSON objects (json) or readable text (console)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="The least severe log level written."
    )
    access_log: bool = Field(
        True, description="Write one access line per request (request id, key name, route…)."
    )
    metrics: bool = Field(
        True,
        description="Count requests, cache look-ups and answers, and serve them at GET /metrics "
        "(admin); false: nothing is counted per request.",
    )
    docs: bool = Field(True, description="Serve the API documentation at /docs and /redoc.")
    fast_lane: bool = Field(
        True,
        description="Answer GET /recommend/{id} and GET /segment/{id} ahead of the framework's "
        "routing, with the same checks and the same bytes (app/fast_lane.py).",
    )
    metrics_multiprocess_dir: Path | None = Field(
        None,
        description="Set by `tastemaker serve` for its workers: the directory where every "
        "worker keeps its metrics (prometheus-client's multiprocess mode).",
    )

    @field_validator("event_types")
    @classmethod
    def _types_are_known(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("TASTEMAKER_EVENT_TYPES must list at least one event type")
        return value

    @field_validator("recommender")
    @classmethod
    def _recommender_config_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        from app.ml.recommender import RecommenderConfig  # the ML core stays out of start-up

        reserved = {"event_weights", "history_length"} & set(value)
        if reserved:
            raise ValueError(
                f"set {sorted(reserved)} with TASTEMAKER_EVENT_WEIGHTS / TASTEMAKER_HISTORY_LENGTH"
            )
        RecommenderConfig.from_dict(value)
        return value

    @field_validator("rate_limits")
    @classmethod
    def _limits_parse(cls, value: dict[str, str]) -> dict[str, str]:
        from limits import parse

        for scope, limit in value.items():
            if scope not in ("read", "write", "admin", "customer", "customer_address"):
                raise ValueError(f"TASTEMAKER_RATE_LIMITS: unknown scope {scope!r}")
            try:
                parse(limit)
            except ValueError as exc:
                raise ValueError(
                    f"TASTEMAKER_RATE_LIMITS[{scope}]={limit!r} is not like '100/minute'"
                ) from exc
        return value

    @field_validator("auth_failure_limit")
    @classmethod
    def _failure_limit_parses(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(
                f"TASTEMAKER_AUTH_FAILURE_LIMIT={value!r} is not like '10/minute'"
            ) from exc
        return value

    @field_validator("token_secrets")
    @classmethod
    def _kids_unique(cls, value: list[TokenSecretSetting]) -> list[TokenSecretSetting]:
        kids = [s.kid for s in value]
        if len(set(kids)) != len(kids):
            raise ValueError("TASTEMAKER_TOKEN_SECRETS: each kid may be listed once")
        return value

    @property
    def browser_origins(self) -> list[str]:
        """Every origin CORS lets in: the API's own and each token secret's."""
        origins = dict.fromkeys(self.cors_origins)
        for secret in self.token_secrets:
            origins.update(dict.fromkeys(secret.cors_origins))
        return list(origins)

    @model_validator(mode="after")
    def _weights_cover_types(self) -> Settings:
        missing = [t for t in self.event_types if t not in self.event_weights]
        if missing:
            raise ValueError(
                f"TASTEMAKER_EVENT_WEIGHTS has no weight for {missing}; add one per event type"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tastemaker.db').as_posix()}"

    def child_environment(self) -> dict[str, str]:
        """These settings as `TASTEMAKER_*` variables, for a trainer process started from here."""
        env = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            if name == "webhook_secret":
                value = self.webhook_secret.get_secret_value() if self.webhook_secret else None
            elif name == "token_secrets":
                value = [
                    {**s.model_dump(mode="json"), "secret": s.secret.get_secret_value()}
                    for s in self.token_secrets
                ]
            text = value if isinstance(value, str) else json.dumps(value)
            env[f"TASTEMAKER_{name.upper()}"] = text
        return env

    @property
    def is_loopback(self) -> bool:
        """Whether the service binds only to the local machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

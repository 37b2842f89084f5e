"""`tastemaker serve`: the flags and the settings in one validated object, then the server."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import console, prepare_store, refuse, settings_or_exit
from app.config import Settings
from app.db import make_engine


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
) -> None:
    """Start the HTTP service (refuses an out-of-date schema, and no keys on a public interface)."""
    from pydantic import ValidationError

    settings = settings_or_exit()
    overrides = {"host": host, "port": port, "workers": workers}
    # One settings object, validated, with the flags in it: the workers serve exactly this.
    try:
        settings = Settings.model_validate(
            {**settings.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
        )
    except ValidationError as exc:
        problems = "; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        refuse(f"invalid option: {problems}", 2)
    serve_with(settings)


def serve_with(settings: Settings) -> None:
    """Serve with exactly `settings` in every worker, after the schema and key checks."""
    from app.main import SchemaOutOfDate, check_schema
    from app.security.keys import AnonymousOnPublicInterface, check_before_serving
    from app.server import serve as run_server

    prepare_store(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        check_schema(engine)
    except SchemaOutOfDate as exc:
        refuse(str(exc), 1)
    finally:
        engine.dispose()
    try:
        check_before_serving(settings)  # before anything is printed or bound
        console.print(f"Serving on http://{settings.host}:{settings.port} (docs at /docs)")
        run_server(settings)
    except AnonymousOnPublicInterface as exc:
        refuse(str(exc), 1)

"""`tastemaker keys create|list|revoke`: API keys stored in the database."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.cli.common import console, settings_or_exit
from app.db import make_engine, make_sessionmaker

keys_cli = typer.Typer(help="Manage API keys stored in the database.")


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (who uses it)")],
    scope: Annotated[
        list[str], typer.Option("--scope", help="read, write or admin (repeatable)")
    ] = ["read"],  # noqa: B006 - typer needs a literal default
) -> None:
    """Create a key; it is printed once and stored only as its hash."""
    from app.security import repository
    from app.security.keys import SCOPES, generate_key, hash_key
    from app.security.models import ApiKey

    bad = [s for s in scope if s not in SCOPES]
    if bad or not 1 <= len(name) <= 64:
        console.print(f"[red]scopes must be among {SCOPES} and the name 1-64 characters[/red]")
        raise typer.Exit(2)
    settings = settings_or_exit()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    key = generate_key()
    with factory.begin() as session:
        if repository.active_by_name(session, name) is not None:
            console.print(
                f"[red]an active key is named {name!r}; revoke it or pick another name[/red]"
            )
            raise typer.Exit(1)
        repository.add(
            session, ApiKey(name=name, prefix=key[:8], key_hash=hash_key(key), scopes=sorted(scope))
        )
    console.print(f"Key {name!r} with scopes {sorted(scope)} (shown once, store it now):")
    typer.echo(key)


@keys_cli.command("list")
def keys_list() -> None:
    """List keys (names, prefixes, scopes; never the keys)."""
    from app.security import repository

    settings = settings_or_exit()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    table = Table(title="API keys")
    for column in ("name", "prefix", "scopes", "created", "revoked"):
        table.add_column(column)
    with factory() as session:
        for key in repository.all_keys(session):
            revoked = key.revoked_at.isoformat() if key.revoked_at else ""
            table.add_row(
                key.name,
                key.prefix + "…",
                ",".join(key.scopes),
                key.created_at.isoformat(),
                revoked,
            )
    for setting in settings.api_keys:
        table.add_row(setting.name, "(settings)", ",".join(setting.scopes), "", "")
    Console().print(table)


@keys_cli.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name")]) -> None:
    """Revoke a stored key; every worker stops accepting it within seconds."""
    from app.security import repository

    settings = settings_or_exit()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with factory.begin() as session:
        key = repository.active_by_name(session, name)
        if key is None:
            console.print(f"[red]no active key named {name!r}[/red]")
            raise typer.Exit(1)
        repository.revoke(session, key)
    console.print(f"Key {name!r} revoked.")

"""``modelport keys ...`` and ``modelport audit``: API keys and the audit log (admin)."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from modelport.cli.common import (
    CaFileOpt,
    InsecureOpt,
    KeyOpt,
    Output,
    OutputOpt,
    UrlOpt,
    cell,
    connect,
    emit,
    fail_with,
    print_json,
    say,
    table,
    warn,
)
from modelport.errors import Conflict

keys_app = typer.Typer(help="Create, list and revoke API keys (admin).", no_args_is_help=True)
ADMIN_SCOPE = "admin"
BOOTSTRAP_ADMIN = "admin"  # the name of the key a server creates when it has no admin key


@keys_app.command("create")
def keys_create(
    name: str,
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="infer, read, write, deploy, admin")],
    expires_in_days: Annotated[float | None, typer.Option(help="the key stops working after this")] = None,
    models: Annotated[str | None, typer.Option(help="limit the key to models matching this glob")] = None,
    rate_limit: Annotated[
        float | None, typer.Option(help="requests per second (per server process); leave out for none")
    ] = None,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Create a key; its secret is shown this once."""
    expires = None
    if expires_in_days is not None:
        expires = (datetime.now(UTC) + timedelta(days=expires_in_days)).isoformat()
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.create_key(name, scope, expires_at=expires, models=models, rate_limit=rate_limit)
    emit(
        data,
        output,
        ["name", "scopes", "models", "rate_limit", "expires_at", "key"],
        "key (the secret is not shown again)",
    )


@keys_app.command("list")
def keys_list(
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """List keys (never their secrets): scopes, limits, and whether each still works."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.list_keys()
    if output is Output.json:
        print_json(data)
        return
    now = datetime.now(UTC)
    headers = ["name", "prefix", "scopes", "models", "rate limit", "expires", "revoked", "created"]
    rows = [
        [
            key["name"],
            key["prefix"],
            cell(key["scopes"]),
            key.get("models") or "all",
            _rate(key.get("rate_limit")),
            expiry(key.get("expires_at"), now),
            _day(key.get("revoked_at")),
            _day(key.get("created_at")),
        ]
        for key in data
    ]
    table(headers, rows, "keys")


def expiry(expires_at: str | None, now: datetime) -> str:
    """``never``, ``expired``, or ``expires 2026-12-01``."""
    if not expires_at:
        return "never"
    moment = _moment(expires_at)
    return "expired" if moment <= now else f"expires {moment.date().isoformat()}"


def _moment(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _day(stamp: str | None) -> str:
    return _moment(stamp).date().isoformat() if stamp else ""


def _rate(rate_limit: float | None) -> str:
    return "none" if rate_limit is None else f"{rate_limit:g}/s"


def _is_active_admin(key: dict[str, Any], now: datetime) -> bool:
    expires = key.get("expires_at")
    return (
        ADMIN_SCOPE in key.get("scopes", [])
        and not key.get("revoked_at")
        and (not expires or _moment(expires) > now)
    )


@keys_app.command("revoke")
def keys_revoke(
    name: str,
    force: Annotated[
        bool, typer.Option("--force", help="revoke it even if it is the last active admin key")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask before revoking an admin key")] = False,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Revoke a key; it stops working at once. Asks first for an admin key (unless --yes)."""
    now = datetime.now(UTC)
    with connect(url, api_key, ca_file, insecure) as client:
        keys = client.list_keys()
        key = next((k for k in keys if k["name"] == name), None)
        is_admin = key is not None and (name == BOOTSTRAP_ADMIN or ADMIN_SCOPE in key.get("scopes", []))
        if is_admin and not yes and not typer.confirm(f"revoke admin key {name!r}?"):
            raise typer.Exit(1)
        try:
            data = client.revoke_key(name, force=force)
        except Conflict as exc:
            fail_with(exc, f"to revoke it anyway: modelport keys revoke {shlex.quote(name)} --force")
    emit(data, output, ["name", "revoked_at"], "revoked")
    left = [k for k in keys if k["name"] != name and _is_active_admin(k, now)]
    if force and key is not None and _is_active_admin(key, now) and not left:
        warn(
            "no active admin key is left: no one can manage keys or read the audit log until the server "
            "restarts, which creates a new bootstrap admin key (printed once, and written to "
            "<data dir>/admin.key)"
        )


def audit(
    actor: Annotated[str | None, typer.Option(help="only this key name")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. version.push, alias.set, auth.denied")] = None,
    target: Annotated[str | None, typer.Option(help="e.g. iris/2 or iris@production")] = None,
    model: Annotated[
        str | None, typer.Option(help="only events on this model, its versions and aliases")
    ] = None,
    before: Annotated[
        int | None, typer.Option(help="only events older than this id (the next page)", min=1)
    ] = None,
    limit: Annotated[int, typer.Option(help="newest first, at most this many", min=1)] = 50,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Show the audit log (admin), newest first, a page at a time."""
    filters = {"actor": actor, "action": action, "target": target, "model": model}
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.audit(**filters, before=before, limit=limit)
    emit(data, output, ["id", "at", "actor", "action", "target", "result", "details"], "audit")
    if output is Output.table and len(data) == limit:
        options = [f"--{k} {shlex.quote(v)}" for k, v in filters.items() if v is not None]
        oldest = min(event["id"] for event in data)
        say(f"older events: modelport audit {' '.join([*options, f'--limit {limit}'])} --before {oldest}")

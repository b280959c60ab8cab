"""``modelport``: serve, manage models over HTTP, predict."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from modelport import __version__
from modelport.client import Client
from modelport.constants import DEFAULT_ALIAS, DEFAULT_URL
from modelport.errors import ModelportError

app = typer.Typer(help="modelport: push a model once, serve it everywhere.", no_args_is_help=True)
models_app = typer.Typer(help="Push, list, promote, roll back and delete models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
keys_app = typer.Typer(help="Create, list and revoke API keys (admin).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
UrlOpt = Annotated[
    str | None, typer.Option("--url", envvar="MODELPORT_URL", help=f"server URL [default: {DEFAULT_URL}]")
]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="MODELPORT_API_KEY", help="API key")]


def _client(url: str | None, key: str | None) -> Client:
    return Client(url, key)  # use as a context manager: it holds a connection pool


def _emit(data: Any, output: Output, columns: list[str], title: str | None = None) -> None:
    if output is Output.json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    rows = data if isinstance(data, list) else [data]
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _run(fn: Any) -> Any:
    try:
        return fn()
    except ModelportError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.message}")
        raise typer.Exit(1) from None
    except OSError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None


@app.command()
def version() -> None:
    """Print the modelport version."""
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address [MODELPORT_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [MODELPORT_PORT]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="data directory [MODELPORT_DATA_DIR]")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL [MODELPORT_DATABASE_URL]")] = None,
    admin_key: Annotated[str | None, typer.Option(help="bootstrap admin key [MODELPORT_ADMIN_KEY]")] = None,
    auth: Annotated[
        bool | None, typer.Option("--auth/--no-auth", help="require API keys [MODELPORT_AUTH]")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="server processes over one data dir [MODELPORT_WORKERS]")
    ] = None,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="TLS certificate (PEM) [MODELPORT_SSL_CERTFILE]")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="TLS private key (PEM) [MODELPORT_SSL_KEYFILE]")
    ] = None,
    demo: Annotated[bool, typer.Option(help="train, push and promote demo models at start")] = False,
    access_log: Annotated[
        bool | None,
        typer.Option("--access-log/--no-access-log", help="log every request [MODELPORT_ACCESS_LOG]"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the server."""
    import uvicorn

    from modelport.demo import curl_examples, install_demo
    from modelport.monitoring.metrics import prepare_multiprocess_dir
    from modelport.server import build_app, build_services
    from modelport.settings import load_settings

    try:
        settings = load_settings(
            host=host,
            port=port,
            data_dir=data_dir,
            database_url=database_url,
            admin_key=admin_key,
            auth=auth,
            workers=workers,
            access_log=access_log,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        )
        services = build_services(settings)
    except ModelportError as exc:
        err.print(f"[red]error[/red]: {exc.message}")
        raise typer.Exit(2) from None
    scheme = "https" if settings.ssl_certfile else "http"
    base = f"{scheme}://{settings.host}:{settings.port}"
    if services.generated_admin_key:
        err.print(
            f"[bold]admin key[/bold] (shown once, also in {settings.data_dir / 'admin.key'}): "
            f"{services.generated_admin_key}"
        )
    if demo:
        err.print("training and pushing demo models ...")
        models = install_demo(services.repository)
        key = settings.admin_key or _read_key(settings.data_dir / "admin.key") if settings.auth else None
        sys.stderr.write("demo models are served; try:\n" + curl_examples(base, key, models) + "\n")
    server_options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level,
        "access_log": settings.access_log,
        "loop": "auto",
        "http": "auto",
        "timeout_graceful_shutdown": 10,
        "proxy_headers": False,  # no proxy in front by default; it also costs a middleware per request
        "server_header": False,
        "ssl_certfile": str(settings.ssl_certfile) if settings.ssl_certfile else None,
        "ssl_keyfile": str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    }
    if settings.workers == 1:
        try:
            uvicorn.run(build_app(services), **server_options)
        finally:
            services.close()
        return
    # Start-up chores ran once above; each worker process builds its own services from the environment.
    services.close()
    os.environ.update(settings.to_env())
    prepare_multiprocess_dir(settings.data_dir.resolve() / "metrics")  # /metrics adds up all workers
    uvicorn.run("modelport.server:worker_app", factory=True, workers=settings.workers, **server_options)


def _read_key(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@models_app.command("list")
def models_list(output: OutputOpt = Output.table, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """List models with their aliases."""
    with _client(url, api_key) as client:
        data = _run(lambda: client.list_models())
    _emit(data, output, ["name", "latest_version", "aliases", "created_at"], "models")


@models_app.command("show")
def models_show(
    name: str, output: OutputOpt = Output.table, url: UrlOpt = None, api_key: KeyOpt = None
) -> None:
    """Show a model, its versions and aliases."""
    with _client(url, api_key) as client:
        data = _run(lambda: client.get_model(name))
    if output is Output.json:
        _emit(data, output, [])
        return
    console.print(f"[bold]{data['name']}[/bold] {data['description']}")
    _emit(data["versions"], output, ["version", "state", "framework", "sha256", "error"], "versions")
    _emit(data["aliases"], output, ["alias", "version", "updated_at", "updated_by"], "aliases")


@models_app.command("versions")
def models_versions(
    name: str, output: OutputOpt = Output.table, url: UrlOpt = None, api_key: KeyOpt = None
) -> None:
    """List a model's versions."""
    with _client(url, api_key) as client:
        data = _run(lambda: client.list_versions(name))
    _emit(
        data, output, ["version", "state", "framework", "sha256", "created_at", "error"], f"{name} versions"
    )


@models_app.command("push")
def models_push(
    name: str,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="model file or .zip/.tar.gz")],
    framework: Annotated[str | None, typer.Option(help="sklearn, onnx, xgboost, lightgbm")] = None,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Upload a model artifact as the model's next version."""
    with (
        _client(url, api_key) as client,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err,
            transient=True,
            disable=output is Output.json,
        ) as progress,
    ):
        task = progress.add_task(f"pushing {path.name}", total=path.stat().st_size)
        data = _run(
            lambda: client.push(name, path, framework=framework, progress=lambda n: progress.advance(task, n))
        )
    _emit(data, output, ["model", "version", "state", "framework", "sha256", "error"], "pushed")
    if data.get("state") == "failed":
        raise typer.Exit(1)


@models_app.command("promote")
def models_promote(
    name: str,
    version: int,
    alias: Annotated[str, typer.Option(help="alias to move")] = DEFAULT_ALIAS,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Point an alias (default production) at a version."""
    with _client(url, api_key) as client:
        data = _run(lambda: client.promote(name, version, alias))
    _emit(data, output, ["alias", "version", "updated_at", "updated_by"], name)


@models_app.command("rollback")
def models_rollback(
    name: str,
    alias: Annotated[str, typer.Option(help="alias to move back")] = DEFAULT_ALIAS,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Move an alias back to its previous version."""
    with _client(url, api_key) as client:
        data = _run(lambda: client.rollback(name, alias))
    _emit(data, output, ["alias", "version", "updated_at", "updated_by"], name)


@models_app.command("delete")
def models_delete(
    name: str,
    version: Annotated[int | None, typer.Option(help="delete only this version")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Delete a model (all versions) or one version."""
    what = f"{name} version {version}" if version else f"model {name} and all its versions"
    if not yes and not typer.confirm(f"delete {what}?"):
        raise typer.Exit(1)
    with _client(url, api_key) as client:
        _run(lambda: client.delete_version(name, version) if version else client.delete_model(name))
    err.print(f"deleted {what}")


@app.command()
def predict(
    name: str,
    data: Annotated[str, typer.Option(help="JSON rows, e.g. '[[5.1, 3.5, 1.4, 0.2]]', or @file.json")],
    version: Annotated[str | None, typer.Option(help="version number or alias")] = None,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Run one inference; the input name and datatype come from the model's metadata."""
    import numpy as np

    from modelport.serving.datatypes import numpy_dtype

    raw = Path(data[1:]).read_text() if data.startswith("@") else data
    try:
        rows = json.loads(raw)
    except ValueError as exc:
        err.print(f"[red]error[/red]: --data is not JSON: {exc}")
        raise typer.Exit(2) from None
    with _client(url, api_key) as client:
        meta = _run(lambda: client.metadata(name, version))
        spec = meta["inputs"][0]
        try:
            array = np.asarray(rows, dtype=numpy_dtype(spec["datatype"]))
        except (ValueError, TypeError) as exc:
            err.print(f"[red]error[/red]: --data does not fit {spec['datatype']}: {exc}")
            raise typer.Exit(2) from None
        outputs, served = _run(lambda: client.infer(name, {spec["name"]: array}, version=version))
    result = {"model": name, "model_version": served, "outputs": {k: v.tolist() for k, v in outputs.items()}}
    if output is Output.json:
        _emit(result, output, [])
        return
    console.print(f"[bold]{name}[/bold] version {served}")
    for key, value in result["outputs"].items():
        console.print(f"  {key}: {value}")


@keys_app.command("create")
def keys_create(
    name: str,
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="infer, read, write, deploy, admin")],
    expires_in_days: Annotated[float | None, typer.Option(help="the key stops working after this")] = None,
    models: Annotated[str | None, typer.Option(help="limit the key to models matching this glob")] = None,
    rate_limit: Annotated[float | None, typer.Option(help="requests per second (per server process)")] = None,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create a key; its secret is shown this once."""
    from datetime import UTC, datetime, timedelta

    expires = None
    if expires_in_days is not None:
        expires = (datetime.now(UTC) + timedelta(days=expires_in_days)).isoformat()
    with _client(url, api_key) as client:
        data = _run(
            lambda: client.create_key(name, scope, expires_at=expires, models=models, rate_limit=rate_limit)
        )
    _emit(
        data, output, ["name", "scopes", "models", "expires_at", "key"], "key (the secret is not shown again)"
    )


@keys_app.command("list")
def keys_list(output: OutputOpt = Output.table, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """List keys (never their secrets)."""
    with _client(url, api_key) as client:
        data = _run(lambda: client.list_keys())
    _emit(
        data, output, ["name", "prefix", "scopes", "models", "created_at", "expires_at", "revoked_at"], "keys"
    )


@keys_app.command("revoke")
def keys_revoke(
    name: str, output: OutputOpt = Output.table, url: UrlOpt = None, api_key: KeyOpt = None
) -> None:
    """Revoke a key; it stops working at once."""
    with _client(url, api_key) as client:
        data = _run(lambda: client.revoke_key(name))
    _emit(data, output, ["name", "revoked_at"], "revoked")


@app.command()
def audit(
    actor: Annotated[str | None, typer.Option(help="only this key name")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. version.push, alias.set, auth.denied")] = None,
    target: Annotated[str | None, typer.Option(help="e.g. iris/2 or iris@production")] = None,
    limit: Annotated[int, typer.Option(help="newest first, at most this many")] = 50,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Show the audit log (admin)."""
    with _client(url, api_key) as client:
        data = _run(lambda: client.audit(actor=actor, action=action, target=target, limit=limit))
    _emit(data, output, ["at", "actor", "action", "target", "result", "details"], "audit")

"""``modelport serve``: run the server."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from modelport.cli.common import err, fail
from modelport.errors import ModelportError


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
    except ModelportError as exc:  # a setting that does not fit, or a server that cannot start with it
        fail(exc.message, 2, kind=exc.code)
    scheme = "https" if settings.ssl_certfile else "http"
    base = f"{scheme}://{settings.host}:{settings.port}"
    if not settings.auth:
        err.print(
            "[bold red]WARNING: auth is off (--no-auth / MODELPORT_AUTH=false): anyone who can reach "
            f"{escape(base)} can do anything: push, delete and run models, and manage keys.[/bold red]",
            highlight=False,
        )
    if services.generated_admin_key:
        err.print(
            f"[bold]admin key[/bold] (shown once, also in {escape(str(settings.data_dir / 'admin.key'))}): "
            f"{escape(services.generated_admin_key)}",
            highlight=False,
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

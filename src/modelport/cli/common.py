"""What every command shares: the connection options, output (tables or JSON), and errors as one line.

Everything a server or a user wrote goes through rich as plain text (``Text`` or ``escape``), never as
markup: ``^[a-z0-9]{0,62}$`` in a message must print as it is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from modelport.client import CertificateRejected, Client, ConnectionFailed
from modelport.constants import DEFAULT_URL
from modelport.errors import ConfigError, Forbidden, ModelportError, Unauthenticated

console = Console()
# soft_wrap: an error is one line however narrow the terminal (or 80 columns when not a terminal)
err = Console(stderr=True, soft_wrap=True)

KEY_HINT = "in the CLI, pass a key with --api-key or MODELPORT_API_KEY"
URL_HINT = "--url or MODELPORT_URL sets the server's URL"


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
UrlOpt = Annotated[
    str | None, typer.Option("--url", envvar="MODELPORT_URL", help=f"server URL (default {DEFAULT_URL})")
]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="MODELPORT_API_KEY", help="API key")]
CaFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        envvar="MODELPORT_CA_FILE",
        help="trust the CA certificate(s) in this PEM file for https:// (e.g. a self-signed server's)",
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure",
        envvar="MODELPORT_INSECURE",
        help="do not verify the server's TLS certificate (anyone in between can read the key)",
    ),
]


def connect(url: str | None, key: str | None, ca_file: Path | None, insecure: bool) -> Client:
    """A client for the connection options; use it as a context manager (it holds a connection pool)."""
    verify: Path | bool = False if insecure else (ca_file or True)
    return Client(url, key, verify=verify)


# ---- output ---------------------------------------------------------------------------------------
def emit(data: Any, output: Output, columns: list[str], title: str | None = None) -> None:
    """``data`` (an object or a list of them) as JSON, or as a table of ``columns``."""
    if output is Output.json:
        print_json(data)
        return
    rows = data if isinstance(data, list) else [data]
    table(columns, [[cell(row.get(c)) for c in columns] for row in rows], title)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
    """Cells are plain text: brackets in them are data, not rich markup."""
    out = Table(title=escape(title) if title else None)
    for header in headers:
        out.add_column(escape(header))
    for row in rows:
        out.add_row(*(Text(value) for value in row))
    console.print(out)


def cell(value: Any) -> str:
    """A value as a reader wants it in a table: lists as words, objects as key=value."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return str(value)


def say(message: str) -> None:
    """A line for the person at the terminal (stderr), ``message`` printed as it is."""
    err.print(escape(message), highlight=False)


def warn(message: str) -> None:
    err.print(f"[bold yellow]warning[/bold yellow]: {escape(message)}", highlight=False)


# ---- errors ---------------------------------------------------------------------------------------
def fail(message: str, code: int = 1, *, kind: str | None = None) -> NoReturn:
    """Print ``error[ (kind)]: message`` as one line on stderr and exit with ``code``."""
    label = f"[red]error[/red] ({escape(kind)})" if kind else "[red]error[/red]"
    err.print(f"{label}: {escape(_one_line(message))}", highlight=False)
    raise typer.Exit(code)


def fail_with(exc: ModelportError, hint: str | None = None) -> NoReturn:
    """Report a modelport error with what to do about it; exit 2 for a bad setting, else 1."""
    hint = hint or _hint(exc)
    message = f"{exc.message}; {hint}" if hint else exc.message
    fail(message, 2 if isinstance(exc, ConfigError) else 1, kind=exc.code)


def _hint(exc: ModelportError) -> str | None:
    if isinstance(exc, CertificateRejected):
        return (
            "trust its CA with --ca-file PATH (MODELPORT_CA_FILE), "
            "or skip the check with --insecure (MODELPORT_INSECURE=1)"
        )
    if isinstance(exc, ConnectionFailed):
        return f"is the server running? {URL_HINT}"
    if isinstance(exc, ConfigError) and exc.field == "url":
        return URL_HINT
    if isinstance(exc, ConfigError) and exc.field == "ca_file":
        return "--ca-file or MODELPORT_CA_FILE names the file"
    if isinstance(exc, Unauthenticated):
        return KEY_HINT
    if isinstance(exc, Forbidden) and "key" in exc.message:
        return f"use a key that may do this; {KEY_HINT}"
    return None


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


class ReportingGroup(TyperGroup):
    """The root command: an ordinary failure anywhere below becomes one line and an exit status, never
    a traceback (a bug still shows one)."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (newer typer brings its own copy of click)
        try:
            return super().invoke(ctx)
        except ModelportError as exc:
            fail_with(exc)
        except BrokenPipeError:  # stdout closed early (| head): click exits quietly
            raise
        except OSError as exc:  # a file the user named: missing, unreadable, a directory, ...
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{(exc.strerror or str(exc)).lower()}")


@contextmanager
def upload_bar(file: Path, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for sending ``file``; yields the callback that advances it by a chunk."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
        disable=quiet,
    ) as progress:
        # the description is rich markup: a file name is data
        bar = progress.add_task(f"pushing {escape(file.name)}", total=file.stat().st_size)
        yield lambda n: progress.advance(bar, n)

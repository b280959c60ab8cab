"""``modelport datasets ...``: upload CSV or Parquet files as dataset versions, list, show, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from modelport.cli.common import (
    CaFileOpt,
    InsecureOpt,
    KeyOpt,
    Output,
    OutputOpt,
    UrlOpt,
    cell,
    connect,
    console,
    emit,
    print_json,
    say,
    table,
    upload_bar,
)

datasets_app = typer.Typer(
    help="Upload CSV or Parquet files as dataset versions to train on; list, show and delete them.",
    no_args_is_help=True,
)

VERSION_COLUMNS = ["dataset", "version", "format", "rows", "columns", "size", "sha256"]
PREVIEW_COLUMNS = 12  # a wider preview does not fit a terminal; --output json has every column


@datasets_app.command("push")
def datasets_push(
    name: str,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="a CSV (a header row) or Parquet file")
    ],
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Upload a file as the dataset's next version; the server checks it first (a bad file is refused
    naming the row or column)."""
    with (
        connect(url, api_key, ca_file, insecure) as client,
        upload_bar(file, output is Output.json) as advance,
    ):
        data = client.push_dataset(name, file, progress=advance)
    if output is Output.json:
        print_json(data)
        return
    emit(data, output, VERSION_COLUMNS, "pushed")
    _schema(data)


@datasets_app.command("list")
def datasets_list(
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """List uploaded datasets, then those bundled with scikit-learn (sklearn:iris, ...)."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.list_datasets()
    emit(data, output, ["name", "latest_version", "rows", "description", "created_at"], "datasets")


@datasets_app.command("show")
def datasets_show(
    name: Annotated[str, typer.Argument(help="a dataset, or sklearn:NAME for a bundled one")],
    version: Annotated[int | None, typer.Option(help="this version (default: the latest)")] = None,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Show a dataset version: its size, its columns' types, nulls and distinct values, its first rows."""
    with connect(url, api_key, ca_file, insecure) as client:
        if version is None:
            data = client.get_dataset(name)
            shown = data.get("latest")
        else:
            data = shown = client.get_dataset_version(name, version)
    if output is Output.json:
        print_json(data)
        return
    if version is None:
        versions = ", ".join(map(str, data.get("versions") or [])) or "none"
        about = data.get("description") or f"versions: {versions}"
        console.print(Text.assemble((name, "bold"), f"  {about}"))
    if not shown:
        say(f"dataset {name} has no versions")
        return
    label = "" if shown.get("version") is None else f" version {shown['version']}"
    size = f", {shown['size']} bytes" if shown.get("size") is not None else ""
    shape = f"{shown['rows']} rows, {shown['columns']} columns, {shown['format']}{size}"
    console.print(Text(f"{shown['dataset']}{label}: {shape}"))
    _schema(shown)
    _preview(shown)


def _schema(version: dict[str, Any]) -> None:
    rows = [[c["name"], c["type"], str(c["nulls"]), str(c["distinct"])] for c in version.get("schema") or []]
    table(["column", "type", "nulls", "distinct"], rows, "schema")


def _preview(version: dict[str, Any]) -> None:
    rows = version.get("preview") or []
    if not rows:
        return
    columns = [c["name"] for c in version.get("schema") or []] or list(rows[0])
    shown = columns[:PREVIEW_COLUMNS]
    table(shown, [[cell(row.get(c)) for c in shown] for row in rows], "first rows")
    if len(columns) > len(shown):
        say(f"({len(columns) - len(shown)} more columns: --output json shows every one)")


@datasets_app.command("delete")
def datasets_delete(
    name: str,
    version: Annotated[int | None, typer.Option(help="delete only this version")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Delete a dataset (all versions) or one version; refused while a job or a model version's lineage
    uses it."""
    what = (
        f"dataset {name} version {version}" if version is not None else f"dataset {name} and all its versions"
    )
    if not yes and not typer.confirm(f"delete {what}?"):
        raise typer.Exit(1)
    with connect(url, api_key, ca_file, insecure) as client:
        client.delete_dataset(name, version)
    say(f"deleted {what}")

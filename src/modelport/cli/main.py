"""``modelport``: serve, manage models over HTTP, predict."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.text import Text

from modelport import __version__
from modelport.cli.admin import audit, keys_app
from modelport.cli.common import (
    CaFileOpt,
    InsecureOpt,
    KeyOpt,
    Output,
    OutputOpt,
    ReportingGroup,
    UrlOpt,
    connect,
    console,
    fail,
    print_json,
)
from modelport.cli.datasets import datasets_app
from modelport.cli.jobs import jobs_app
from modelport.cli.models import models_app
from modelport.cli.monitor import monitor
from modelport.cli.serve import serve
from modelport.cli.training import train

app = typer.Typer(
    cls=ReportingGroup,
    help="modelport: push a model once, serve it everywhere.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a bug's traceback must not print the API key in a local
)
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(datasets_app, name="datasets")
app.add_typer(jobs_app, name="jobs")
app.command()(serve)
app.command()(train)
app.command()(audit)
app.command()(monitor)

DATA_HELP = "give JSON rows such as '[[5.1, 3.5, 1.4, 0.2]]', or @file.json"


@app.command()
def version() -> None:
    """Print the modelport version."""
    typer.echo(__version__)


@app.command()
def predict(
    name: str,
    data: Annotated[str, typer.Option(help="JSON rows, e.g. '[[5.1, 3.5, 1.4, 0.2]]', or @file.json")],
    version: Annotated[str | None, typer.Option(help="version number or alias")] = None,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Run one inference; the input name and datatype come from the model's metadata."""
    import numpy as np

    from modelport.serving.datatypes import numpy_dtype

    rows = _parse_rows(_read_data(data))
    with connect(url, api_key, ca_file, insecure) as client:
        meta = client.metadata(name, version)
        if not meta.get("inputs"):
            fail(f"model {name} declares no inputs in its metadata: predict cannot build a request")
        spec = meta["inputs"][0]
        try:
            array = np.asarray(rows, dtype=numpy_dtype(spec["datatype"]))
        except (ValueError, TypeError, OverflowError) as exc:
            fail(f"--data does not fit {spec['datatype']}: {exc}; {DATA_HELP}", 2)
        outputs, served = client.infer(name, {spec["name"]: array}, version=version)
    result: dict[str, Any] = {
        "model": name,
        "model_version": served,
        "outputs": {k: v.tolist() for k, v in outputs.items()},
    }
    if output is Output.json:
        print_json(result)
        return
    console.print(Text.assemble((name, "bold"), f" version {served}"))
    for key, value in result["outputs"].items():
        console.print(Text(f"  {key}: {value}"))


def _read_data(data: str) -> str:
    if not data.startswith("@"):
        return data
    path = Path(data[1:])
    try:
        return path.read_text()
    except FileNotFoundError:
        fail(f"--data {data}: file {str(path)!r} not found; {DATA_HELP}", 2)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fail(f"--data {data}: cannot read {str(path)!r} ({reason}); {DATA_HELP}", 2)


def _parse_rows(raw: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_not_a_number, parse_float=_finite)
    except _NotFinite as exc:
        fail(f"--data holds {exc}, which JSON cannot carry: send finite numbers", 2)
    except ValueError as exc:
        fail(f"--data is not JSON: {exc}; {DATA_HELP}", 2)


class _NotFinite(ValueError):
    """NaN, Infinity, or a number too large for a float: the V2 JSON tensor format has none of them."""


def _not_a_number(word: str) -> NoReturn:
    raise _NotFinite(word)


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotFinite(f"{text} (beyond the range of a 64-bit float)")
    return value

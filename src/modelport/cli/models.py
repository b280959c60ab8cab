"""``modelport models ...``: create, push, list, configure, alias, load and delete models."""

from __future__ import annotations

import json
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
    connect,
    console,
    emit,
    fail,
    print_json,
    say,
    table,
    upload_bar,
)
from modelport.client.calls import Batching
from modelport.client.packing import packed
from modelport.constants import DEFAULT_ALIAS

models_app = typer.Typer(
    help="Create, push, list, configure, promote, roll back, load and delete models.", no_args_is_help=True
)

VERSION_COLUMNS = ["model", "version", "state", "framework", "sha256", "error"]
ALIAS_COLUMNS = ["alias", "version", "updated_at", "updated_by"]
BATCHING_KEYS = ["max_batch_size", "max_delay_ms", "max_queue", "max_batch_tokens"]
MaxBatchSizeOpt = Annotated[
    int | None,
    typer.Option(help="most requests run together as one batch (server default: MODELPORT_MAX_BATCH_SIZE)"),
]
MaxDelayOpt = Annotated[
    float | None,
    typer.Option(
        help="longest wait, in ms, for a batch to fill (server default: MODELPORT_MAX_BATCH_DELAY_MS)"
    ),
]
MaxQueueOpt = Annotated[
    int | None,
    typer.Option(help="most requests waiting; more are answered 503 (server default: MODELPORT_MAX_QUEUE)"),
]


MaxTokensOpt = Annotated[
    int | None,
    typer.Option(
        help="most tokens in one batch, padding included, for text models (MODELPORT_MAX_BATCH_TOKENS)"
    ),
]
DeviceOpt = Annotated[
    str | None, typer.Option(help="auto (a GPU when there is one), cpu, cuda or cuda:N; default auto")
]
DtypeOpt = Annotated[str | None, typer.Option(help="float32, float16 or bfloat16 (deep-learning runtimes)")]
RuntimeOpt = Annotated[
    str | None,
    typer.Option(help="settings only the runtime reads, as a JSON object, e.g. '{\"normalize\": true}'"),
]


def _runtime(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        settings = json.loads(text)
    except ValueError:
        settings = None
    if not isinstance(settings, dict):
        fail(f"--runtime must be a JSON object, e.g. '{{\"normalize\": true}}'; got {text!r}", 2)
    return dict(settings)


def _batching(
    max_batch_size: int | None,
    max_delay_ms: float | None,
    max_queue: int | None,
    max_batch_tokens: int | None,
) -> Batching:
    """The batching options given on the command line (0 included: the server judges it)."""
    batching = Batching()
    if max_batch_size is not None:
        batching["max_batch_size"] = max_batch_size
    if max_delay_ms is not None:
        batching["max_delay_ms"] = max_delay_ms
    if max_queue is not None:
        batching["max_queue"] = max_queue
    if max_batch_tokens is not None:
        batching["max_batch_tokens"] = max_batch_tokens
    return batching


@models_app.command("list")
def models_list(
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """List models with their aliases."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.list_models()
    emit(data, output, ["name", "latest_version", "aliases", "description", "created_at"], "models")


@models_app.command("create")
def models_create(
    name: str,
    description: Annotated[str, typer.Option(help="what the model is for")] = "",
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Create an empty model with a description (a push creates a model too, without one)."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.create_model(name, description)
    emit(data, output, ["name", "description", "created_at", "created_by"], "created")


@models_app.command("show")
def models_show(
    name: str,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Show a model, its versions and aliases."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.get_model(name)
    if output is Output.json:
        print_json(data)
        return
    console.print(Text.assemble((data["name"], "bold"), " ", data["description"]))
    emit(data["versions"], output, ["version", "state", "framework", "sha256", "error"], "versions")
    emit(data["aliases"], output, ALIAS_COLUMNS, "aliases")


@models_app.command("versions")
def models_versions(
    name: str,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """List a model's versions."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.list_versions(name)
    emit(data, output, ["version", "state", "framework", "sha256", "created_at", "error"], f"{name} versions")


@models_app.command("push")
def models_push(
    name: str,
    path: Annotated[
        Path, typer.Argument(exists=True, help="model file, .zip/.tar/.tar.gz archive, or a directory")
    ],
    framework: Annotated[
        str | None,
        typer.Option(
            help="sklearn, onnx, xgboost, lightgbm, torch, keras, transformers, sentence-transformers "
            "(default: recognised from the content)"
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="transformers: text-classification, feature-extraction or text-generation"),
    ] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    runtime: RuntimeOpt = None,
    max_batch_size: MaxBatchSizeOpt = None,
    max_delay_ms: MaxDelayOpt = None,
    max_queue: MaxQueueOpt = None,
    max_batch_tokens: MaxTokensOpt = None,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Upload a model as the model's next version; a directory is sent as a .tar.gz of its files."""
    quiet = output is Output.json
    batching = _batching(max_batch_size, max_delay_ms, max_queue, max_batch_tokens)
    settings = _runtime(runtime)
    if path.is_dir() and not quiet:
        say(f"packing {path} ...")
    with (
        connect(url, api_key, ca_file, insecure) as client,
        packed(path) as file,
        upload_bar(file, quiet) as advance,
    ):
        data = client.push(
            name,
            file,
            framework=framework,
            progress=advance,
            device=device,
            dtype=dtype,
            task=task,
            runtime=settings,
            **batching,
        )
    emit(data, output, VERSION_COLUMNS, "pushed")
    twins = data.get("same_sha256_as") or []
    if twins and not quiet:
        noun = "version" if len(twins) == 1 else "versions"
        say(f"note: same content as {noun} {', '.join(map(str, twins))} of {name}")
    if data.get("state") == "failed":
        raise typer.Exit(1)


@models_app.command("config")
def models_config(
    name: str,
    version: int,
    max_batch_size: MaxBatchSizeOpt = None,
    max_delay_ms: MaxDelayOpt = None,
    max_queue: MaxQueueOpt = None,
    max_batch_tokens: MaxTokensOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    runtime: RuntimeOpt = None,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Show a version's serving settings; with options, change only those (the others stay). A new
    device, dtype or runtime setting loads the version again that way, then switches to it."""
    batching = _batching(max_batch_size, max_delay_ms, max_queue, max_batch_tokens)
    settings = _runtime(runtime)
    with connect(url, api_key, ca_file, insecure) as client:
        if batching or device or dtype or settings is not None:
            config = client.configure_version(
                name, version, device=device, dtype=dtype, runtime=settings, **batching
            )["config"]
        else:
            config = client.version_config(name, version)
    if output is Output.json:
        print_json(config)
        return
    table(["setting", "value"], _config_rows(config), f"{name} version {version}")


def _config_rows(config: dict[str, Any]) -> list[list[str]]:
    batching = config.get("batching") or {}
    rows = [[f"batching.{k}", _value(batching.get(k))] for k in BATCHING_KEYS]
    rows += [[f"batching.{k}", _value(v)] for k, v in batching.items() if k not in BATCHING_KEYS]
    rows += [[k, _value(v)] for k, v in config.items() if k != "batching"]
    return rows


def _value(value: Any) -> str:
    return "(server default)" if value is None else str(value)


@models_app.command("promote")
def models_promote(
    name: str,
    target: Annotated[
        str,
        typer.Argument(
            metavar="ALIAS_OR_VERSION",
            help="a version number, or another alias of the model (e.g. staging): its version",
        ),
    ],
    alias: Annotated[str, typer.Option(help="alias to move")] = DEFAULT_ALIAS,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Point an alias (default production) at a version, or at what another alias points at."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.promote(name, target, alias)
    emit(data, output, ALIAS_COLUMNS, name)


@models_app.command("rollback")
def models_rollback(
    name: str,
    alias: Annotated[str, typer.Option(help="alias to move back")] = DEFAULT_ALIAS,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Move an alias back to its previous version."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.rollback(name, alias)
    emit(data, output, ALIAS_COLUMNS, name)


@models_app.command("unalias")
def models_unalias(
    name: str,
    alias: str,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Remove an alias; requests through it answer 404 from then on (its history stays)."""
    with connect(url, api_key, ca_file, insecure) as client:
        client.delete_alias(name, alias)
    say(f"removed alias {alias} of {name}")


@models_app.command("aliases")
def models_aliases(
    name: str,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """List a model's aliases and the versions they point at."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.list_aliases(name)
    emit(data, output, ALIAS_COLUMNS, f"{name} aliases")


@models_app.command("history")
def models_history(
    name: str,
    alias: Annotated[str, typer.Option(help="whose moves to show")] = DEFAULT_ALIAS,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Show every move of an alias (default production): promotions and rollbacks, who and when."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.alias_history(name, alias)
    emit(data, output, ["version", "action", "at", "by"], f"{name}@{alias} history")


@models_app.command("load")
def models_load(
    name: str,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Put an unloaded model back in service and load its serving version now, on every server process."""
    with connect(url, api_key, ca_file, insecure) as client:
        client.load_model(name)
    say(f"loaded {name}")


@models_app.command("unload")
def models_unload(
    name: str,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Take the model out of service on every server process (its requests answer 503) and free its
    memory, until `models load`."""
    with connect(url, api_key, ca_file, insecure) as client:
        client.unload_model(name)
    say(f"unloaded {name}")


@models_app.command("delete")
def models_delete(
    name: str,
    version: Annotated[int | None, typer.Option(help="delete only this version")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Delete a model (all versions) or one version."""
    what = f"{name} version {version}" if version is not None else f"model {name} and all its versions"
    if not yes and not typer.confirm(f"delete {what}?"):
        raise typer.Exit(1)
    with connect(url, api_key, ca_file, insecure) as client:
        if version is not None:
            client.delete_version(name, version)
        else:
            client.delete_model(name)
    say(f"deleted {what}")

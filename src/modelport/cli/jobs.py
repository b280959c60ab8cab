"""``modelport jobs ...``: list, show, follow and cancel training jobs; the estimators they can use."""

from __future__ import annotations

import json
from contextlib import closing
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
    fail,
    print_json,
    say,
    table,
)
from modelport.cli.training import (
    INTERRUPTED,
    decision_line,
    describe,
    metrics_summary,
    params_line,
    search_line,
)

jobs_app = typer.Typer(
    help="List, show, follow and cancel training jobs; list the estimators they can use.",
    no_args_is_help=True,
)

JOB_COLUMNS = ["id", "state", "model", "dataset", "estimator", "progress", "step", "version", "created_at"]


def _percent(progress: Any) -> str:
    return f"{round(100 * float(progress or 0))}%"


def _rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**j, "progress": _percent(j.get("progress"))} for j in jobs]


@jobs_app.command("list")
def jobs_list(
    state: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed or cancelled")] = None,
    model: Annotated[str | None, typer.Option(help="only this model's jobs")] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many (server default 100)")] = None,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """List jobs, newest first."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.list_jobs(state=state, model=model, limit=limit)
    emit(data if output is Output.json else _rows(data), output, JOB_COLUMNS, "jobs")


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[int, typer.Argument(metavar="ID")],
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Show a job: its request, state, progress, metrics and result."""
    with connect(url, api_key, ca_file, insecure) as client:
        job = client.get_job(job_id)
    if output is Output.json:
        print_json(job)
        return
    fields = ["state", "model", "dataset", "estimator", "task", "metric", "step", "version", "error",
              "created_by", "created_at", "started_at", "finished_at"]  # fmt: skip
    rows = [[f, cell(job.get(f))] for f in fields if job.get(f) is not None]
    rows.append(["progress", _percent(job.get("progress"))])
    result = job.get("result") or {}
    rows.append(["params", params_line(result.get("params") or job["spec"].get("params") or {})])
    if job.get("metrics"):
        rows.append(["metrics", metrics_summary(job["metrics"])])
    if result.get("metrics"):
        rows.append(["result", metrics_summary(result["metrics"])])
    if result.get("search"):
        rows.append(["search", search_line(result["search"], job["metric"])])
    if result.get("decision"):
        rows.append(["promotion", decision_line(result["decision"])])
    table(["job", str(job_id)], rows)


@jobs_app.command("logs")
def jobs_logs(
    job_id: Annotated[int, typer.Argument(metavar="ID")],
    follow: Annotated[bool, typer.Option("--follow", help="keep printing until the job ends")] = False,
    after: Annotated[int, typer.Option(help="only the events after this sequence number")] = 0,
    output: Annotated[Output, typer.Option("--output", "-o", help="table (lines) or json (JSON lines)")] = (
        Output.table
    ),
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Print a job's state changes, progress and log lines; with --follow, until it ends (exit 1 unless
    it succeeded)."""
    with connect(url, api_key, ca_file, insecure) as client:
        final = None
        try:
            with closing(client.job_events(job_id, after, follow=follow)) as events:
                for event in events:
                    if event["event"] == "end":
                        final = event["data"]
                    elif output is Output.json:
                        typer.echo(json.dumps(event))
                    elif (line := describe(event)) is not None:
                        console.print(Text(f"{event['at'] or ''}  {line}"), highlight=False)
        except KeyboardInterrupt:
            raise typer.Exit(INTERRUPTED) from None
    if follow and final is not None and final["state"] != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[int, typer.Argument(metavar="ID")],
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Cancel a job: a queued one at once, a running one within a second or two."""
    with connect(url, api_key, ca_file, insecure) as client:
        job = client.cancel_job(job_id)
    if output is Output.json:
        print_json(job)
    elif job["state"] == "cancelled":
        say(f"cancelled job {job_id}")
    else:
        say(f"job {job_id} is stopping (see: modelport jobs show {job_id})")


@jobs_app.command("estimators")
def jobs_estimators(
    name: Annotated[str | None, typer.Argument(help="show this estimator's parameters in full")] = None,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """List what a job can train: each estimator's tasks, framework and parameters (with defaults)."""
    with connect(url, api_key, ca_file, insecure) as client:
        data = client.list_estimators()
    if name is not None:
        data = [e for e in data if e["name"] == name]
        if not data:
            fail(f"no estimator {name!r}; `modelport jobs estimators` lists them", kind="not_found")
    if output is Output.json:
        print_json(data[0] if name is not None else data)
        return
    if name is None:
        rows = [[e["name"], cell(e["tasks"]), e["framework"], _defaults(e["params"])] for e in data]
        table(["estimator", "tasks", "framework", "parameters (default)"], rows, "estimators")
        return
    properties = data[0]["params"].get("properties", {})
    rows = [
        [p, _type(s), json.dumps(s.get("default")), s.get("description", "")] for p, s in properties.items()
    ]
    console.print(
        Text.assemble((name, "bold"), f"  {data[0]['description']}  tasks: {cell(data[0]['tasks'])}")
    )
    emit([dict(zip(["parameter", "type", "default", "description"], r, strict=True)) for r in rows], output,
         ["parameter", "type", "default", "description"], "parameters")  # fmt: skip


def _defaults(schema: dict[str, Any]) -> str:
    return ", ".join(f"{p}={json.dumps(s.get('default'))}" for p, s in schema.get("properties", {}).items())


def _type(schema: dict[str, Any]) -> str:
    """A parameter's JSON-schema type in a few words: ``integer | null``, ``'sqrt' | 'log2' | number``."""
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    return str(schema.get("type", "any"))

"""``modelport train``: submit a training job, and follow it live (a progress bar, then its result); and
how a job's events, metrics and promotion decision read, which ``modelport jobs`` shares."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from contextlib import closing
from typing import Annotated, Any, NoReturn

import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
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
    err,
    fail,
    print_json,
    say,
    table,
)
from modelport.client import Client
from modelport.client.training import Promote, Search, Validation, last_job
from modelport.errors import Conflict, RequestTimeout

CANCEL_WAIT_SECONDS = 30.0  # after a cancel, how long to wait to report the job's end
INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C


# ---- options --------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A value as JSON when it is JSON (``50``, ``0.1``, ``true``, ``null``, ``[64,32]``), else the
    text itself (``sqrt``); NaN and Infinity stay text (JSON cannot carry them)."""
    try:
        return json.loads(text, parse_constant=_refuse)
    except ValueError:
        return text


def _refuse(word: str) -> NoReturn:
    raise ValueError(word)


def _pair(option: str, text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        fail(f"{option} {text!r}: write NAME=VALUE", 2)
    return name.strip(), value


def parse_params(pairs: list[str]) -> dict[str, Any]:
    return {name: parse_value(value) for name, value in (_pair("--param", p) for p in pairs)}


def parse_space(pairs: list[str]) -> dict[str, Any]:
    """``name=v1,v2,...`` (values to try), ``name=[...]`` (a JSON list of them), or
    ``name=low:high[:log]`` (a range, for a random search)."""
    space: dict[str, Any] = {}
    for name, text in (_pair("--space", p) for p in pairs):
        listed = parse_value(text)
        if isinstance(listed, list):
            space[name] = listed
        elif (bounds := _range(text)) is not None:
            space[name] = bounds
        else:
            space[name] = [parse_value(v) for v in text.split(",")]
    return space


def _range(text: str) -> dict[str, Any] | None:
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        return None
    low, high = (parse_value(p) for p in parts[:2])
    if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in (low, high)):
        return None
    return {"low": low, "high": high, "log": len(parts) == 3}


# ---- train ----------------------------------------------------------------------------------------
def train(
    model: Annotated[str, typer.Argument(help="the model whose next version the job makes")],
    dataset: Annotated[str, typer.Option(help="NAME, NAME:VERSION, or sklearn:NAME (bundled)")],
    target: Annotated[str, typer.Option(help="the column to predict")],
    estimator: Annotated[str, typer.Option(help="e.g. random_forest (see `modelport jobs estimators`)")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE (JSON, else text); repeat")
    ] = None,
    feature: Annotated[
        list[str] | None, typer.Option("--feature", "-f", help="a column to train on; repeat (default: all)")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="classification or regression (default: from the target)")
    ] = None,
    holdout: Annotated[
        float | None, typer.Option(help="fraction of rows scored at the end (server default 0.2; 0: none)")
    ] = None,
    folds: Annotated[int | None, typer.Option(help="k-fold cross-validation on the training rows")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the split and the estimator")] = None,
    metric: Annotated[str | None, typer.Option(help="accuracy, balanced_accuracy, f1; rmse, mae, r2")] = None,
    search: Annotated[str | None, typer.Option(help="grid or random: search the --space")] = None,
    space: Annotated[
        list[str] | None,
        typer.Option(help="NAME=V1,V2,... or NAME=LOW:HIGH[:log] (random search); repeat"),
    ] = None,
    trials: Annotated[int | None, typer.Option(help="how many a random search tries")] = None,
    promote: Annotated[
        str | None, typer.Option(help="move this alias to the new version if it beats the alias' version")
    ] = None,
    min_improvement: Annotated[
        float | None, typer.Option(help="the margin --promote needs, in the metric's units")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", help="show the job's progress until it ends")] = False,
    output: OutputOpt = Output.table,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Train a model version on a dataset as a job on the server; prints the job's id. With --follow,
    shows its progress and result, and exits 1 unless it succeeded (Ctrl-C offers to cancel it)."""
    validation = Validation()
    if holdout is not None:
        validation["holdout"] = holdout or None  # 0: no holdout (cross-validation only)
    if folds is not None:
        validation["folds"] = folds
    if seed is not None:
        validation["seed"] = seed
    searched: Search | None = None
    if search is not None:
        if not space:
            fail("--search needs the parameters to search: --space NAME=V1,V2 or NAME=LOW:HIGH", 2)
        searched = Search(kind=search, space=parse_space(space))
        if trials is not None:
            searched["trials"] = trials
    elif space or trials is not None:
        fail("--space and --trials go with --search grid or --search random", 2)
    promoting: Promote | None = None
    if promote is not None:
        promoting = Promote(alias=promote)
        if min_improvement is not None:
            promoting["min_improvement"] = min_improvement
    elif min_improvement is not None:
        fail("--min-improvement goes with --promote ALIAS", 2)
    quiet = output is Output.json
    with connect(url, api_key, ca_file, insecure) as client:
        job = client.train(
            model, dataset=dataset, target=target, estimator=estimator, params=parse_params(param or []),
            features=feature, task=task, validation=validation or None, metric=metric, search=searched,
            promote=promoting,
        )  # fmt: skip
        if not follow:
            if quiet:
                print_json(job)
            else:
                typer.echo(job["id"])
                say(f"job {job['id']} queued; follow it with: modelport jobs logs {job['id']} --follow")
            return
        if not quiet:
            say(f"job {job['id']}: {job['estimator']} on {job['dataset']} -> a new version of {model}")
        final = follow_job(client, job, quiet=quiet)
    report(final, output)


def follow_job(client: Client, job: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Show the job's events until it ends and return it; Ctrl-C asks whether to cancel it."""
    job_id = job["id"]
    try:
        with _Display(job, quiet) as display, closing(client.job_events(job_id)) as events:
            return last_job(display.shown(events))
    except KeyboardInterrupt:
        pass
    if not typer.confirm(f"Cancel job {job_id}?", default=False, err=True):
        say(f"job {job_id} goes on; follow it again with: modelport jobs logs {job_id} --follow")
        raise typer.Exit(INTERRUPTED)
    try:
        client.cancel_job(job_id)
        say(f"cancelling job {job_id} ...")
    except Conflict:
        pass  # it ended meanwhile: report how
    try:
        return client.wait_job(job_id, timeout=CANCEL_WAIT_SECONDS)
    except RequestTimeout:
        fail(f"job {job_id} was asked to stop but has not ended yet; see: modelport jobs show {job_id}")


class _Display:
    """The job's progress on stderr: a live bar on a terminal, else a line per event (logs, CI)."""

    def __init__(self, job: dict[str, Any], quiet: bool) -> None:
        self.quiet, self.metric = quiet, job["metric"]
        self.last: str | None = None
        self.live = None if quiet or not err.is_terminal else _bar()
        self.task = self.live.add_task(f"job {job['id']}", total=1.0, metrics="") if self.live else None

    def __enter__(self) -> _Display:
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.stop()

    def shown(self, events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for event in events:
            self.show(event)
            yield event

    def show(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        data = event["data"]
        if self.live is None or self.task is None:
            line = describe(event)
            if line is not None and line != self.last:  # the same line again says nothing new
                err.print(Text(line), highlight=False)
            self.last = line
        elif event["event"] == "progress":
            summary = metrics_summary(data.get("metrics"), self.metric)  # all of them do not fit
            step = str(data.get("step", ""))
            self.live.update(
                self.task, completed=data.get("progress") or 0.0, description=step, metrics=summary
            )
        elif event["event"] == "state":
            self.live.update(self.task, description=str(data.get("state", "")))
        elif event["event"] == "log":
            self.live.console.print(Text(str(data.get("message", "")), style="dim"))


def _bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),  # steps and metrics are data, not markup
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[metrics]}", markup=False),
        console=err,
        transient=True,
    )


# ---- what a job says ------------------------------------------------------------------------------
def number(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return cell(value)


def flat_metrics(metrics: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested metrics as ``(path, value)``: ``("holdout.accuracy", "0.9333")``, ``("cv.f1", "0.91±0.02")``."""
    if not isinstance(metrics, dict):
        return [] if metrics is None else [(prefix, number(metrics))]
    if {"mean", "std"} <= metrics.keys():
        return [(prefix, f"{number(metrics['mean'])}±{number(metrics['std'])}")]
    return [
        pair for k, v in metrics.items() for pair in flat_metrics(v, f"{prefix}.{k}" if prefix else str(k))
    ]


def metrics_summary(metrics: Any, only: str | None = None) -> str:
    """Metrics on one line; ``only``: just those of that name (the job's metric), and the search's best."""
    pairs = flat_metrics(metrics)
    if only is not None:
        pairs = [(k, v) for k, v in pairs if k.rsplit(".", 1)[-1] in (only, "search_best")]
    return " ".join(f"{k}={v}" for k, v in pairs)


def params_line(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())


def search_line(search: dict[str, Any], metric: str) -> str:
    best, score = params_line(search.get("best_params") or {}), number(search.get("best_score"))
    return f"{search.get('kind')}, {search.get('trials')} trials; best cv {metric} {score} with {best}"


def describe(event: dict[str, Any]) -> str | None:
    """One line for an event, as `jobs logs` and a followed job print it."""
    kind, data = event["event"], event["data"]
    if kind == "state":
        error = f": {data['error']}" if data.get("error") else ""
        return f"state: {data.get('state')}{error}"
    if kind == "progress":
        percent = round(100 * float(data.get("progress") or 0.0))
        summary = metrics_summary(data.get("metrics"))
        return f"[{percent:3d}%] {data.get('step', '')}" + (f"  {summary}" if summary else "")
    if kind == "log":
        return f"log: {data.get('message', '')}"
    if kind == "decision":
        return f"decision: {decision_line(data)}"
    return None


def decision_line(decision: dict[str, Any]) -> str:
    alias, challenger = decision.get("alias"), decision.get("challenger") or {}
    champion = decision.get("champion") or {}
    if decision.get("promoted"):
        head = f"promoted {alias} to version {challenger.get('version')}"
    elif champion.get("version") is not None:
        head = f"kept {alias} at version {champion['version']}"
    else:
        head = f"did not promote {alias}"
    scores = f"{decision.get('metric')} {number(challenger.get('score'))}"
    if champion.get("score") is not None:
        scores += f" vs {number(champion['score'])}"
    return f"{head} ({scores}): {decision.get('reason', '')}"


def report(job: dict[str, Any], output: Output) -> None:
    """The ended job: its result on stdout; exit 1 unless it succeeded."""
    if output is Output.json:
        print_json(job)
    elif job["state"] == "succeeded":
        result = job.get("result") or {}
        console.print(
            Text.assemble(
                (f"job {job['id']} succeeded", "bold green"), f": {job['model']} version {job['version']}"
            )
        )
        rows = [[name, metrics_summary(v)] for name, v in (result.get("metrics") or {}).items() if v]
        if rows:
            table(["scored on", "metrics"], rows)
        if result.get("params"):
            console.print(Text(f"params: {params_line(result['params'])}"))
        if result.get("search"):
            console.print(Text(f"search: {search_line(result['search'], job['metric'])}"))
        if result.get("decision"):
            console.print(Text(f"promotion: {decision_line(result['decision'])}"))
    if job["state"] != "succeeded":
        fail(f"job {job['id']} {job['state']}: {job.get('error') or 'no reason given'}")

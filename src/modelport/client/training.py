"""Training's I/O-free parts of the SDK: the option shapes of a job's request, and the reader of a job's
server-sent events (``Client.job_events`` feeds it the lines)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

from modelport.errors import RequestTimeout

JSONObject = dict[str, Any]
# the server sends a comment at least this often while a job is quiet (``api.management.jobs``)
KEEPALIVE_SECONDS = 15.0
# a stream that breaks this many times in a row without delivering an event is given up on
MAX_RESUMES = 3


class Validation(TypedDict, total=False):
    """How the model is scored: ``holdout`` (a fraction of rows scored at the end; ``None``: none, then
    give ``folds``), ``folds`` (k-fold cross-validation on the training rows), ``seed``."""

    holdout: float | None
    folds: int | None
    seed: int


class Search(TypedDict, total=False):
    """Hyper-parameter search: ``kind`` grid or random; ``space`` maps a parameter to a list of values,
    or (random only) to ``{"low", "high", "log"}``; ``trials``: how many a random search tries."""

    kind: str
    space: dict[str, Any]
    trials: int


class Promote(TypedDict, total=False):
    """Move ``alias`` to the new version only if it beats the alias' version by ``min_improvement``
    (in ``metric``'s units; default metric: the job's)."""

    alias: str
    metric: str | None
    min_improvement: float


class JobLimits(TypedDict, total=False):
    """Lower the server's limits for this job (never raise them)."""

    memory_mb: int | None
    cpu_seconds: int | None
    wall_seconds: int | None


def job_spec(
    model: str,
    dataset: str,
    target: str,
    estimator: str,
    params: dict[str, Any] | None = None,
    features: Sequence[str] | None = None,
    task: str | None = None,
    validation: Validation | None = None,
    metric: str | None = None,
    search: Search | None = None,
    promote: Promote | None = None,
    limits: JobLimits | None = None,
) -> JSONObject:
    """The ``POST /api/v1/jobs`` body; an option not given is left out (the server's default)."""
    options: JSONObject = {
        "features": list(features) if features is not None else None,
        "task": task,
        # kept whole: {"holdout": None} asks for no holdout, where leaving it out means the default 0.2
        "validation": dict(validation) if validation is not None else None,
        "metric": metric,
        "search": dict(search) if search is not None else None,
        "promote": dict(promote) if promote is not None else None,
        "limits": dict(limits) if limits is not None else None,
    }
    body = {"model": model, "dataset": dataset, "target": target, "estimator": estimator}
    return body | {"params": params or {}} | {k: v for k, v in options.items() if v is not None}


class EventStream:
    """Server-sent events, a line at a time, as ``{"event", "id", "at", "data"}`` dicts.

    ``after`` is the last sequence number seen (where to resume), ``ended`` whether the final ``end``
    event came (its ``data`` is the job, ``id`` and ``at`` None); an event's ``data`` is what the job
    reported: ``{"state"}``, ``{"progress", "step", "metrics"}``, ``{"message"}``, or the decision.
    """

    def __init__(self, after: int = 0) -> None:
        self.after = after
        self.ended = False
        self._event, self._id, self._data = "", "", list[str]()

    def resume(self) -> int:
        """Where a new connection starts: after the last whole event (a part of one is dropped; the
        server sends it again)."""
        self._event, self._id, self._data = "", "", []
        return self.after

    def feed(self, line: str) -> JSONObject | None:
        """The event that ``line`` completes (a blank line ends one), else None."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # a comment: the server's keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None

    def _dispatch(self) -> JSONObject | None:
        kind, seq, lines = self._event or "message", self._id, self._data
        self._event, self._id, self._data = "", "", []
        if not lines:
            return None
        body = json.loads("\n".join(lines))
        if kind == "end":
            self.ended = True
            return {"event": kind, "id": None, "at": None, "data": body}
        number = int(seq) if seq.isascii() and seq.isdigit() else None
        if number is not None:
            self.after = max(self.after, number)
        return {"event": kind, "id": number, "at": body.get("at"), "data": body.get("data", {})}


def read_timeout(client: float | None, deadline: float | None) -> float | None:
    """How long one wait for a line of the stream may last: the client's read timeout, cut to the time
    left before ``deadline`` (a ``time.monotonic()``), since a quiet stream sends nothing for a while."""
    if deadline is None:
        return client
    left = max(deadline - time.monotonic(), 0.01)
    return left if client is None else min(client, left)


def overdue(job_id: int, timeout: float | None, deadline: float, read: float | None) -> bool:
    """Raise ``RequestTimeout`` once ``deadline`` has passed. Else True when the connection should be
    opened again: its waits (``read``) could outlast the deadline by more than a second, and the
    deadline is close enough that a keep-alive may not come first to check it."""
    left = deadline - time.monotonic()
    if left <= 0:
        within = f" within {timeout:g} s" if timeout is not None else ""
        raise RequestTimeout(f"job {job_id} did not end{within} (it goes on)")
    return read is not None and left < KEEPALIVE_SECONDS and read - left > 1.0


def last_job(events: Iterable[JSONObject]) -> JSONObject:
    """The job that the ``end`` event carries (the iterator stops right after it)."""
    for event in events:
        if event["event"] == "end":
            return dict(event["data"])
    raise AssertionError("a job's event stream stops only after its end event")

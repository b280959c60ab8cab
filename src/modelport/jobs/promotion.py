"""Champion/challenger: after a job's version is ready, move the alias only if the new version beat the
one the alias served when the job started, on the same holdout, by the margin; and only if the alias
still serves that version (compare-and-set in one transaction). The decision is audited either way."""

from __future__ import annotations

import math
from typing import Any

from modelport.errors import Conflict
from modelport.jobs.spec import JobSpec, improvement
from modelport.registry import Registry
from modelport.registry.jobs import JobRecord
from modelport.repository import ModelRepository


def decide(
    registry: Registry,
    repository: ModelRepository,
    job: JobRecord,
    spec: JobSpec,
    result: dict[str, Any],
    champion: dict[str, Any] | None,
    version: int,
) -> dict[str, Any]:
    promote = spec.promote
    assert promote is not None
    metric = promote.metric or job.spec["metric"]
    challenger = _score(result.get("challenger"), metric)
    decision: dict[str, Any] = {
        "alias": promote.alias,
        "metric": metric,
        "min_improvement": promote.min_improvement,
        "challenger": {"version": version, "score": challenger},
        "champion": None,
        "promoted": False,
    }
    scored = result.get("champion")
    expected: int | None = None
    if challenger is None:
        decision["reason"] = f"the new version has no {metric} on the holdout"
    elif champion is None:
        decision["promoted"], decision["reason"] = True, "no champion: the alias did not exist"
    elif scored is None or "error" in scored or _score(scored, metric) is None:
        error = (scored or champion).get("error") or f"it has no {metric} on the holdout"
        decision["champion"] = {"version": champion["version"], "error": error}
        decision["reason"] = f"the champion could not be scored: {error}"
    else:
        champion_score = _score(scored, metric)
        assert champion_score is not None
        gain = improvement(metric, challenger, champion_score)
        expected = champion["version"]
        decision["champion"] = {"version": expected, "score": champion_score}
        decision["improvement"] = gain
        if gain > 0 and gain >= promote.min_improvement:
            decision["promoted"], decision["reason"] = True, "the challenger won by the margin"
        else:
            decision["reason"] = "the challenger did not win by the margin"
    if decision["promoted"]:
        try:
            repository.promote(spec.model, promote.alias, version, by=job.created_by, expected=expected)
        except Conflict as exc:  # moved (or created) by someone else while the job ran: theirs stands
            decision["promoted"], decision["reason"] = False, f"not promoted: {exc.message}"
    registry.audit.record(
        actor=job.created_by,
        action="job.promote",
        target=f"{spec.model}@{promote.alias}",
        result="ok" if decision["promoted"] else "kept",
        details={"job": job.id, **decision},
    )
    registry.jobs.add_event(job.id, "decision", decision)
    return decision


def _score(scored: dict[str, Any] | None, metric: str) -> float | None:
    value = (scored or {}).get("metrics", {}).get(metric)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

"""Hyper-parameter search for a training job, with Optuna: every grid point (up to the trial budget) or
that many random draws, each checked against the estimator's schema and scored by the caller's ``fit``
(cross-validation on the training rows). Same seed, same trials."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from modelport.errors import InvalidSpec
from modelport.jobs import estimators
from modelport.jobs.spec import LOWER_IS_BETTER, Range, Search


class NoTrialSucceeded(Exception):
    pass


def search(
    spec: Search,
    estimator: str,
    task: str,
    params: dict[str, Any],
    metric: str,
    *,
    fit: Callable[[dict[str, Any]], float],
    seed: int,
    on_trial: Callable[[int, int, float | None], None],
) -> dict[str, Any]:
    """Optuna over ``spec.space``: every grid point (up to ``trials``) or ``trials`` random draws, each
    scored by ``fit`` (cross-validation on the training rows). Same seed, same trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the job reports trials itself
    space = dict(spec.space)
    # Optuna's choices must be plain scalars: other values (layer sizes) travel as JSON text
    encoded = {
        name: values
        if isinstance(values, Range) or all(map(scalar, values))
        else [json.dumps(v) for v in values]
        for name, values in space.items()
    }
    sampler: optuna.samplers.BaseSampler
    if spec.kind == "grid":
        grid = {name: list(values) for name, values in encoded.items() if not isinstance(values, Range)}
        sampler = optuna.samplers.GridSampler(grid, seed=seed)
        total = min(spec.trials, math.prod(len(v) for v in grid.values()))
    else:
        sampler, total = optuna.samplers.RandomSampler(seed=seed), spec.trials
    lower = metric in LOWER_IS_BETTER
    study = optuna.create_study(direction="minimize" if lower else "maximize", sampler=sampler)
    trials: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None

    def objective(trial: optuna.Trial) -> float:
        nonlocal best
        chosen = {
            name: suggest(trial, estimator, name, values, space[name]) for name, values in encoded.items()
        }
        entry: dict[str, Any] = {"number": trial.number, "params": chosen, "score": None}
        trials.append(entry)
        try:
            estimators.validate(estimator, task, {**params, **chosen})  # e.g. l1_ratio without saga
            score = finite(fit(chosen))
            if score is None:
                raise ValueError("the score is not a number")
        except (InvalidSpec, ValueError) as exc:
            entry["error"] = exc.message if isinstance(exc, InvalidSpec) else first_line(exc)
            on_trial(len(trials), total, None if best is None else best["score"])
            raise
        entry["score"] = score
        if best is None or (score < best["score"] if lower else score > best["score"]):
            best = entry
        on_trial(len(trials), total, best["score"])
        return score

    study.optimize(objective, n_trials=total, catch=(InvalidSpec, ValueError))
    if best is None:
        raise NoTrialSucceeded(f"every trial of the search failed; the first: {trials[0]['error']}")
    return {
        "kind": spec.kind,
        "trials": trials,
        "best_params": best["params"],
        "best_score": best["score"],
    }


def suggest(trial: Any, estimator: str, name: str, values: list[Any] | Range, original: Any) -> Any:
    if isinstance(values, Range):
        if estimators.numeric_kind(estimator, name) == "int":
            return trial.suggest_int(name, int(values.low), int(values.high), log=values.log)
        return trial.suggest_float(name, values.low, values.high, log=values.log)
    choice = trial.suggest_categorical(name, values)
    return original[values.index(choice)] if values is not original else choice


def scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]

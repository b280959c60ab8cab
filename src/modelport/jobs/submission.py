"""Checking a training request against its dataset before it is queued: every refusal is a 422 that names
the field, so a job never waits in the queue only to fail on something the request already showed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modelport.datasets.service import DatasetService, ResolvedDataset
from modelport.errors import InvalidSpec, NotFound
from modelport.jobs import estimators
from modelport.jobs.spec import NUMERIC, JobSpec, Task, default_metric, metrics_for

MAX_CLASSES_OF_INTEGER_TARGET = 20  # an integer target with more distinct values is a regression


@dataclass(frozen=True)
class Submission:
    spec: JobSpec
    dataset: ResolvedDataset
    task: Task
    features: list[str]
    metric: str

    def stored(self) -> dict[str, Any]:
        """What the job row keeps: the request as given, and what was resolved from it."""
        return {
            "request": self.spec.model_dump(mode="json"),
            "task": self.task,
            "features": self.features,
            "metric": self.metric,
            "dataset": self.dataset.lineage(),
        }


def parse_spec(body: Any) -> JobSpec:
    try:
        return JobSpec.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise InvalidSpec(f"{where}: {message}", field=where) from None


def prepare(spec: JobSpec, datasets: DatasetService) -> Submission:
    try:
        dataset = datasets.resolve(spec.dataset)
    except NotFound as exc:
        raise InvalidSpec(exc.message, field="dataset") from None
    target = dataset.column(spec.target)
    if target is None:
        raise InvalidSpec(f"dataset {dataset.ref} has no column {spec.target!r}", field="target")
    features = _features(spec, dataset)
    task = _task(spec, target)
    for name in [spec.target, *features]:
        nulls = dataset.column(name)["nulls"]  # type: ignore[index]
        if nulls:
            raise InvalidSpec(
                f"column {name!r} has {nulls} missing values: fill or drop them before training",
                field="target" if name == spec.target else "features",
            )
    metric = spec.metric or default_metric(task)
    for field, value in (("metric", metric), ("promote.metric", spec.promote and spec.promote.metric)):
        if value and value not in metrics_for(task):
            raise InvalidSpec(
                f"{field}: {value!r} is not a {task} metric ({', '.join(metrics_for(task))})", field=field
            )
    params = estimators.validate(spec.estimator, task, spec.params)
    if spec.search is not None:
        estimators.validate_space(
            spec.estimator, task, spec.search.kind, spec.search.space, spec.search.trials
        )
    if spec.promote is not None and spec.validation.holdout is None:
        raise InvalidSpec(
            "promote compares the new version with the alias' version on a holdout: set validation.holdout",
            field="validation.holdout",
        )
    return Submission(spec.model_copy(update={"params": params}), dataset, task, features, metric)


def _features(spec: JobSpec, dataset: ResolvedDataset) -> list[str]:
    if spec.features is None:
        features = [c["name"] for c in dataset.info["schema"] if c["name"] != spec.target]
        text = [name for name in features if dataset.column(name)["type"] not in NUMERIC]  # type: ignore[index]
        if text:
            raise InvalidSpec(
                f"columns {', '.join(map(repr, text[:5]))} are not numeric: list numeric ones in features",
                field="features",
            )
        if not features:
            raise InvalidSpec(f"dataset {dataset.ref} has no column besides the target", field="features")
        return features
    if len(set(spec.features)) != len(spec.features):
        raise InvalidSpec("features lists a column twice", field="features")
    for i, name in enumerate(spec.features):
        column = dataset.column(name)
        if column is None:
            raise InvalidSpec(f"dataset {dataset.ref} has no column {name!r}", field=f"features.{i}")
        if name == spec.target:
            raise InvalidSpec(f"the target {name!r} cannot also be a feature", field=f"features.{i}")
        if column["type"] not in NUMERIC:
            raise InvalidSpec(
                f"feature {name!r} is {column['type']}: features must be numeric (integer, float or boolean)",
                field=f"features.{i}",
            )
    return list(spec.features)


def _task(spec: JobSpec, target: dict[str, Any]) -> Task:
    kind = target["type"]
    if spec.task == "regression" and kind not in ("integer", "float"):
        raise InvalidSpec(f"a regression needs a numeric target; {spec.target!r} is {kind}", field="task")
    if spec.task is not None:
        return spec.task
    if kind in ("string", "boolean"):
        return "classification"
    if kind == "integer" and target["distinct"] <= MAX_CLASSES_OF_INTEGER_TARGET:
        return "classification"
    return "regression"

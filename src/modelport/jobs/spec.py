"""What a training job asks for: validated at submission (422 naming the field), stored with the job and
handed to the job's process as JSON. Nothing in it is ever evaluated as code."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelport.names import NAME_PATTERN

Task = Literal["classification", "regression"]
Scalar = bool | int | float | str | None
CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1")  # f1: macro-averaged
REGRESSION_METRICS = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
MAX_FEATURES = 1000
NUMERIC = frozenset({"integer", "float", "boolean"})  # the column types a feature may have


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Validation(Strict):
    """``holdout``: the fraction of rows kept out of training and scored at the end (stratified for
    classification). ``folds``: k-fold cross-validation on the training rows. Either or both."""

    holdout: float | None = Field(0.2, gt=0, lt=1)
    folds: int | None = Field(None, ge=2, le=20)
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _one_scheme(self) -> Validation:
        if self.holdout is None and self.folds is None:
            raise ValueError("give holdout, folds or both")
        return self


class Range(Strict):
    """A numeric range for random search: uniform, or log-uniform with ``log``; drawn as integers for an
    integer parameter (whose bounds must then be whole numbers)."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError("low must be below high")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class Search(Strict):
    """Hyper-parameter search over the estimator's own parameters (each value checked against its
    schema), scored by cross-validation on the training rows (``validation.folds``, else 3 folds)."""

    kind: Literal["grid", "random"]
    space: dict[str, list[Any] | Range] = Field(min_length=1, max_length=20)
    trials: int = Field(20, ge=1, le=500)


class Promote(Strict):
    """Champion/challenger: move ``alias`` to the new version only if it beats the version the alias
    serves on the same holdout by at least ``min_improvement`` (in ``metric``'s units)."""

    alias: str = Field(pattern=NAME_PATTERN.pattern)
    metric: str | None = None  # default: the job's metric
    min_improvement: float = Field(0.0, ge=0, le=1e9)


class JobLimits(Strict):
    """Lower the server's per-job limits for this job (never raise them)."""

    memory_mb: int | None = Field(None, ge=64, le=2**30)
    cpu_seconds: int | None = Field(None, ge=1, le=10**7)
    wall_seconds: int | None = Field(None, ge=1, le=10**7)


class JobSpec(Strict):
    model: str = Field(pattern=NAME_PATTERN.pattern)
    dataset: str = Field(min_length=1, max_length=140)  # "name", "name:3", or "sklearn:iris"
    target: str = Field(min_length=1, max_length=256)
    features: list[str] | None = Field(None, min_length=1, max_length=MAX_FEATURES)
    task: Task | None = None  # inferred from the target column when absent
    estimator: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    validation: Validation = Field(default_factory=Validation)
    metric: str | None = None  # default: accuracy (classification), rmse (regression)
    search: Search | None = None
    promote: Promote | None = None
    limits: JobLimits = Field(default_factory=JobLimits)


def default_metric(task: Task) -> str:
    return "accuracy" if task == "classification" else "rmse"


def metrics_for(task: Task) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def improvement(metric: str, challenger: float, champion: float) -> float:
    """How much better the challenger is (positive: better), whichever direction the metric goes."""
    return champion - challenger if metric in LOWER_IS_BETTER else challenger - champion

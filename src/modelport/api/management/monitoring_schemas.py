"""Bodies of the monitoring routes (``api/management/monitoring.py``)."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelport.monitoring.service import MAX_WINDOW

REQUEST_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
WINDOW = re.compile(r"^(\d{1,7})([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def window_seconds(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` -> seconds."""
    match = WINDOW.match(text.strip())
    if match is None:
        raise ValueError("a window is a number of seconds or a number with s, m, h or d (15m, 1h, 7d)")
    return int(match.group(1)) * UNITS[match.group(2)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MonitoringConfigIn(Strict):
    sample_rate: float = Field(
        ge=0, le=1, description="share of answered requests written to the prediction log (0: off)"
    )
    reference_rows: int = Field(
        0, ge=0, le=1_000_000,
        description="logged predictions that make a version's reference profile when it has none (0: never)",
    )  # fmt: skip


class MonitoringConfigOut(BaseModel):
    sample_rate: float
    reference_rows: int
    updated_at: str | None
    updated_by: str | None


class FeedbackItem(Strict):
    request_id: str = Field(pattern=REQUEST_ID, description="the X-Request-Id of the answered request")
    label: str | int | bool | None = Field(None, description="the true class (classification)")
    value: float | None = Field(None, description="the true value (regression)")

    @model_validator(mode="after")
    def one_outcome(self) -> FeedbackItem:
        if (self.label is None) == (self.value is None):
            raise ValueError("give exactly one of label or value")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError("value must be a finite number")
        if isinstance(self.label, str) and len(self.label) > 256:
            raise ValueError("label is longer than 256 characters")
        return self


class FeedbackOut(BaseModel):
    accepted: int
    matched: int = Field(description="how many of them name a request already in the prediction log")
    unmatched: list[str]


class ReferenceIn(Strict):
    dataset: str = Field(max_length=140, description="name, name:version or sklearn:<name>")
    features: list[str] | None = Field(None, max_length=10_000)
    target: str | None = Field(None, description="a column whose distribution is the predictions' reference")


class ReferenceOut(BaseModel):
    source: str
    rows: int | None
    features: list[str]


class AlertIn(Strict):
    kind: Literal["p99", "error_rate", "drift", "accuracy"] = Field(
        description="p99 (seconds, fires above), error_rate (0-1, above), drift (largest PSI or centroid "
        "distance, above), accuracy (live, fires below)"
    )
    threshold: float = Field(ge=0, le=1e6)
    window: str = Field("5m", description="the window each evaluation looks at: 300, 5m, 1h, ...")
    version: str | None = Field(
        None, max_length=63, description="an alias or number; none: the default route"
    )
    webhook_url: str | None = Field(None, max_length=2048)
    webhook_secret: str | None = Field(None, min_length=16, max_length=256)

    @field_validator("threshold")
    @classmethod
    def finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("threshold must be a finite number")
        return value

    @field_validator("window")
    @classmethod
    def bounded_window(cls, value: str) -> str:
        seconds = window_seconds(value)
        if not 10 <= seconds <= MAX_WINDOW:
            raise ValueError(f"window must be between 10 s and {MAX_WINDOW} s")
        return value

    @field_validator("webhook_url")
    @classmethod
    def http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return value

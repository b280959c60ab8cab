"""Observers: one place where what happened to each inference request is handed to whoever watches.

Every surface (V2, and later OpenAI and MLflow) reports each answered request, error or not, as an
``InferenceEvent``. Observers (metrics today; the prediction log, drift statistics and shadow copies
later) receive it after the answer is on its way: ``notify`` schedules them on the event loop instead of
running them inside the request, and an observer that fails is logged and never affects the caller.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from modelport.runtimes.base import Tensors

log = logging.getLogger("modelport.observers")


@dataclass(frozen=True)
class InferenceEvent:
    model: str  # "" when the name is unknown, so that label sets stay bounded
    version: int | None  # the version that answered; None when none was reached
    surface: str  # "v2", "openai", "mlflow"
    status: int  # HTTP status of the answer
    duration: float  # seconds from arrival to answer
    error: str | None = None  # the error code of a refused or failed request
    inputs: Tensors = field(default_factory=dict)
    outputs: Tensors = field(default_factory=dict)
    request_id: str | None = None  # the answer's X-Request-Id: the client's own (when valid) or a new one
    # generation and embedding requests
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token: float | None = None  # seconds from arrival to the first generated token
    per_token: float | None = None  # seconds per generated token after the first


class Observer(Protocol):
    def observe(self, event: InferenceEvent) -> None: ...


class Observers:
    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def add(self, observer: Observer) -> None:
        self._observers.append(observer)

    def notify(self, event: InferenceEvent) -> None:
        """Deliver ``event`` once the current request has yielded (its answer is being sent)."""
        if not self._observers:
            return
        try:
            asyncio.get_running_loop().call_soon(self._deliver, event)
        except RuntimeError:  # no loop: a synchronous caller
            self._deliver(event)

    def _deliver(self, event: InferenceEvent) -> None:
        for observer in self._observers:
            try:
                observer.observe(event)
            except Exception:
                log.exception("observer %s failed", type(observer).__name__)

"""Which device a version runs on: its config asks (auto, cpu, cuda, cuda:N), its runtime declares what it
can use, and this server has what it has. GPUs are discovered through torch, and only once a runtime that
can use one is loaded (a server that serves only tabular models never imports torch)."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelport.errors import NotReady
from modelport.runtimes.base import Capabilities, LoadOptions, is_cuda


@functools.cache
def gpus() -> tuple[int, ...]:
    """Total memory in bytes of each CUDA GPU this process can see (empty without torch or a GPU)."""
    if importlib.util.find_spec("torch") is None:
        return ()
    import torch

    if not torch.cuda.is_available():
        return ()
    return tuple(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))


def resolve_device(wanted: str, capabilities: Capabilities, gpu_budget: int, what: str) -> str:
    """The device to load on. ``gpu_budget`` is this server's GPU memory budget (0: no GPU is used);
    ``what`` names the version in errors. ``auto`` takes the runtime's first usable device."""
    cuda_ok = any(is_cuda(d) for d in capabilities.devices)
    if wanted == "auto":
        for device in capabilities.devices:
            if device == "cpu" or (is_cuda(device) and gpu_budget > 0):
                return device
        raise NotReady(
            f"{what} needs a GPU ({', '.join(capabilities.devices)}) and this server has no GPU memory budget"
        )
    if wanted == "cpu":
        if "cpu" not in capabilities.devices:
            raise NotReady(f"{what} is configured for the CPU, which its runtime cannot use")
        return "cpu"
    if not cuda_ok:
        raise NotReady(f"{what} is configured for {wanted!r} and its runtime runs on the CPU only")
    if gpu_budget <= 0:
        raise NotReady(f"{what} is configured for {wanted!r} and this server has no GPU memory budget")
    return wanted


GPU_SHARE = 0.9  # of each GPU's memory, when no budget is configured: room for the framework's own use


@dataclass(frozen=True)
class Hardware:
    """What this server gives its versions: a GPU memory budget and compute threads per version."""

    gpu_budget: int | None = 0  # bytes; None: 90% of the GPUs' memory shared by the workers (0 without one)
    threads: int = 1  # intra-op threads of the framework (torch's are per process)
    workers: int = 1  # server processes that share the GPUs (``serve --workers N``)

    def gpu_memory(self) -> int:
        if self.gpu_budget is not None:
            return self.gpu_budget
        return int(sum(gpus()) * GPU_SHARE) // self.workers

    def options(
        self, config: Mapping[str, Any], task: str | None, capabilities: Capabilities, what: str
    ) -> LoadOptions:
        """How to load a version whose serving config is ``config``."""
        gpu = self.gpu_memory() if any(is_cuda(d) for d in capabilities.devices) else 0
        device = resolve_device(str(config.get("device", "auto")), capabilities, gpu, what)
        runtime = config.get("runtime")
        return LoadOptions(
            device=device,
            dtype=config.get("dtype"),
            task=task,
            threads=self.threads,
            settings=runtime if isinstance(runtime, dict) else {},
        )

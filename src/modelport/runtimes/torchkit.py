"""What the torch-based runtimes share: threads, dtypes, devices, GPU memory and its out-of-memory error.

Imported only by runtimes that need torch; importing it imports torch.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np
import torch

from modelport.errors import LoadError, ModelportError, OutOfMemory, Overloaded
from modelport.runtimes.base import LoadOptions, MemoryUse, is_cuda

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
V2_TO_TORCH: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "FP16": torch.float16,
    "BF16": torch.bfloat16,
    "FP32": torch.float32,
    "FP64": torch.float64,
}
TORCH_TO_V2 = {dt: name for name, dt in V2_TO_TORCH.items()}


def use_threads(threads: int) -> None:
    """torch's intra-op threads are per process: set them to what the server gives its runtimes."""
    if threads >= 1 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def dtype_of(options: LoadOptions) -> torch.dtype:
    """The floating-point dtype the version computes in (float32 unless its config says otherwise)."""
    return TORCH_DTYPES[options.dtype or "float32"]


def device_of(options: LoadOptions) -> torch.device:
    if is_cuda(options.device) and not torch.cuda.is_available():
        raise LoadError(f"device {options.device!r} was asked for and this server has no CUDA GPU")
    return torch.device(options.device)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A result on the host as numpy; bfloat16 (which numpy lacks) becomes float32."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.cpu().numpy()


class GpuMeter:
    """GPU memory a load adds on its device (0 on the CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.before = self._allocated()
        self.used = 0

    def _allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else 0

    def stop(self) -> int:
        self.used = max(self._allocated() - self.before, 0)
        return self.used


@contextmanager
def _out_of_memory_as(device: torch.device, error: type[ModelportError], what: str) -> Iterator[None]:
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        release(device)
        raise error(f"not enough memory on {device} {what}") from None


def out_of_memory_as_error(device: torch.device) -> AbstractContextManager[None]:
    """A device without room for the version: a clean ``OutOfMemory`` (the version is marked failed)."""
    return _out_of_memory_as(device, OutOfMemory, "to load the model")


def batch_memory_as_overload(device: torch.device) -> AbstractContextManager[None]:
    """A batch that does not fit the device's free memory: 503 with Retry-After (fewer rows may fit)."""
    return _out_of_memory_as(device, Overloaded, "for this batch; send fewer rows")


def release(device: torch.device | None = None) -> None:
    """Give freed tensors' memory back: the GPU's cache really empties, so an eviction frees the GPU."""
    gc.collect()
    if (device is None or device.type == "cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def memory_of(module: Any, device: torch.device, gpu_bytes: int) -> MemoryUse:
    """Host bytes of the parameters and buffers when on the CPU; the measured GPU bytes on a GPU."""
    if device.type == "cuda":
        return MemoryUse(host=0, gpu=gpu_bytes)
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        total += tensor.numel() * tensor.element_size()
    return MemoryUse(host=total)

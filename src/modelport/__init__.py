"""modelport: model-as-a-service."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelport.client import AsyncClient, Client

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> object:
    # The SDK pulls in httpx and numpy: imported on first use, so the server and the CLI start light.
    if name in ("Client", "AsyncClient"):
        from modelport import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

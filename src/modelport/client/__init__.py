"""Python SDK: ``Client`` (blocking) and ``AsyncClient`` over the management API and V2 inference.

Both send the same ``calls.Call`` descriptions and raise the same ``modelport.errors`` classes.
"""

from __future__ import annotations

from modelport.client.aio import AsyncClient
from modelport.client.base import BaseClient
from modelport.client.calls import KeyOptions, default_api_key
from modelport.client.sync import Client
from modelport.constants import DEFAULT_URL

__all__ = ["DEFAULT_URL", "AsyncClient", "BaseClient", "Client", "KeyOptions", "default_api_key"]

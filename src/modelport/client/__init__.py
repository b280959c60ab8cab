"""Python SDK: ``Client`` (blocking) and ``AsyncClient`` over the management API and V2 inference.

Both send the same ``calls.Call`` descriptions and raise the same ``modelport.errors`` classes, plus
``ConnectionFailed`` / ``CertificateRejected`` when no HTTP answer comes at all.
"""

from __future__ import annotations

from modelport.client.aio import AsyncClient
from modelport.client.base import BaseClient
from modelport.client.calls import Batching, KeyOptions, default_api_key
from modelport.client.sync import Client
from modelport.constants import DEFAULT_URL
from modelport.errors import CertificateRejected, ConnectionFailed

__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "BaseClient",
    "Batching",
    "CertificateRejected",
    "Client",
    "ConnectionFailed",
    "KeyOptions",
    "default_api_key",
]

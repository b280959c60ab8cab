"""Webhook notifications of alerts: JSON POSTs signed with HMAC-SHA256, retried with backoff.

The receiver checks ``X-Modelport-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
HMAC-SHA256(secret, "<t>." + body): the timestamp is signed with the body, so a captured request
cannot be replayed later with a new time (receivers should refuse old ``t``). Sending happens on the
monitoring loop's thread, from the registry's outbox: never on a request's path.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
import orjson

from modelport import __version__
from modelport.registry.alerts import Delivery

SIGNATURE_HEADER = "X-Modelport-Signature"
BACKOFF_FIRST = 2.0  # seconds before the second attempt; doubled each time
BACKOFF_MAX = 600.0


def signature(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: str, body: bytes, header: str, *, tolerance: float = 300.0, now: float | None = None
) -> bool:
    """What a receiver does (also used by the tests): the signature matches and is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp)
    return hmac.compare_digest(expected, f"t={timestamp},v1={fields.get('v1', '')}")


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt."""
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempts - 1)))


def send(client: httpx.Client, delivery: Delivery) -> None:
    """POST one delivery; raises ``httpx.HTTPError`` (or ValueError for a non-2xx answer) when it failed."""
    body = orjson.dumps(delivery.payload)
    headers = {
        "content-type": "application/json",
        "user-agent": f"modelport/{__version__}",
        "x-modelport-delivery": str(delivery.id),
    }
    if delivery.secret:
        headers[SIGNATURE_HEADER] = signature(delivery.secret, body, int(time.time()))
    answer = client.post(delivery.url, content=body, headers=headers)
    if not 200 <= answer.status_code < 300:
        raise ValueError(f"the receiver answered {answer.status_code}")

"""Bounds and defaults used by more than one module, defined once."""

from __future__ import annotations

MAX_VERSION = 2**31 - 1  # version numbers are 32-bit integers in every registry database

# adaptive batching: defaults of the server settings and bounds of per-version overrides
MAX_BATCH_SIZE = 256  # rows
MAX_BATCH_TOKENS = 16_384  # tokens in a batch, for runtimes batched by a token budget (text models)
MAX_BATCH_DELAY_MS = 2.0
MAX_QUEUE = 1024
BATCH_SIZE_LIMIT = 1_000_000
BATCH_DELAY_LIMIT_MS = 10_000.0
QUEUE_LIMIT = 1_000_000
BATCH_TOKENS_LIMIT = 10_000_000

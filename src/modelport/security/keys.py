"""API keys: random secrets shown once, stored as sha256 digests, carrying scopes.

The bootstrap admin key exists so that a new server can be administered at all: it is created only
when no active admin key exists (first start, or after the last one was revoked with ``force``), and
that creation is audited (``key.bootstrap``). A configured (``MODELPORT_ADMIN_KEY``) or file
(``admin.key``) key that was revoked stays revoked across restarts.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import logging
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from modelport.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from modelport.names import check_name
from modelport.registry import KeyRecord, Registry

log = logging.getLogger("modelport.keys")
KEY_PREFIX = "mp_"
MODEL_GLOB = re.compile(r"^[a-z0-9_*?-]{1,63}$")
ADMIN_KEY_NAME = "admin"
SYSTEM_ACTOR = "modelport"  # the actor of what the server does by itself, in the audit log


class Scope(StrEnum):
    INFER = "infer"
    READ = "read"
    WRITE = "write"
    DEPLOY = "deploy"
    ADMIN = "admin"


def parse_scopes(values: list[str]) -> set[Scope]:
    try:
        return {Scope(v) for v in values}
    except ValueError:
        raise InvalidInput(f"scopes must be among {[s.value for s in Scope]}", field="scopes") from None


def hash_key(secret: str) -> str:
    # Keys are 256-bit random tokens, so a plain digest is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]
    expires_at: datetime | None = None
    models: str | None = None  # glob, e.g. "fraud-*"; None: every model
    rate_limit: float | None = None  # requests per second; None: unlimited

    def can_access(self, model: str) -> bool:
        return self.models is None or fnmatch.fnmatchcase(model, self.models)

    def require_model(self, model: str) -> None:
        """A key limited to other models learns nothing about this one: 404, as if it did not exist."""
        if not self.can_access(model):
            raise NotFound(f"model {model!r} not found")

    def expired(self) -> bool:
        return self.expires_at is not None and datetime.now(UTC) >= self.expires_at

    def require(self, scope: Scope) -> None:
        if Scope.ADMIN.value not in self.scopes and scope.value not in self.scopes:
            raise Forbidden(f"this key lacks the {scope.value!r} scope")


ANONYMOUS_ADMIN = Principal("anonymous", frozenset({Scope.ADMIN.value}))


def principal_of(record: KeyRecord) -> Principal:
    """Who a key's holder is: its name, scopes, expiry, model glob and rate limit."""
    return Principal(record.name, record.scopes, record.expires_at, record.models, record.rate_limit)


class KeyService:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def create(
        self,
        name: str,
        scopes: list[str],
        *,
        by: str,
        expires_at: datetime | None = None,
        models: str | None = None,
        rate_limit: float | None = None,
    ) -> tuple[KeyRecord, str]:
        check_name(name)
        if models is not None and not MODEL_GLOB.fullmatch(models):
            raise InvalidInput("models must be a model name or a glob of one, e.g. 'fraud-*'", field="models")
        parsed = parse_scopes(scopes)
        if not parsed:
            raise InvalidInput("a key needs at least one scope", field="scopes")
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidInput(
                    "expires_at needs a time zone, e.g. 2027-01-31T00:00:00Z", field="expires_at"
                )
            if expires_at <= datetime.now(UTC):
                raise InvalidInput("expires_at is in the past", field="expires_at")
        secret = new_secret()
        record = self.registry.keys.create(
            name,
            key_hash=hash_key(secret),
            prefix=secret[:8],
            scopes=[s.value for s in parsed],
            expires_at=expires_at,
            models=models,
            rate_limit=rate_limit,
        )
        details = {
            "scopes": sorted(s.value for s in parsed),
            "expires_at": expires_at and rfc3339(expires_at),
        }
        self.registry.audit.record(actor=by, action="key.create", target=name, details=details)
        return record, secret

    def revoke(self, name: str, *, by: str, force: bool = False) -> KeyRecord:
        """Revoke ``name``; the last active admin key only with ``force`` (Conflict otherwise)."""
        record = self.registry.keys.revoke(name, allow_last_admin=force)
        self.registry.audit.record(
            actor=by, action="key.revoke", target=name, details={"forced": True} if force else None
        )
        return record

    def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        record = self.registry.keys.find_by_hash(hash_key(secret))
        if record is None or record.revoked_at is not None:
            raise Unauthenticated("invalid or revoked API key")
        who = principal_of(record)
        if who.expired():
            raise Unauthenticated("this API key has expired")
        return who

    def bootstrap_admin(self, data_dir: Path, configured: str | None) -> str | None:
        """Create a bootstrap admin key when no active admin key exists at all; returns the secret when
        it was generated now (print it once; it is also written to ``<data_dir>/admin.key``).

        Its secret is the configured one, else the one in ``admin.key``, unless that key is already
        known here (revoked or expired: it stays so, with a warning) or there is none: then a new one
        is generated. While an active admin key exists nothing is created or changed."""
        key_file = data_dir / "admin.key"
        source, secret = "MODELPORT_ADMIN_KEY", configured
        if not secret and key_file.exists():
            source, secret = "admin.key", key_file.read_text().strip()
        known = self.registry.keys.find_by_hash(hash_key(secret)) if secret else None
        if known is not None and known.revoked_at is not None:
            log.warning(
                "the admin key from %s (key %r) was revoked at %s and stays revoked",
                source,
                known.name,
                rfc3339(known.revoked_at),
            )
        if self.registry.keys.active_admins():
            if secret and known is None:
                log.warning(
                    "the admin key from %s is not a key of this server and was not installed, because "
                    "active admin keys exist: create admin keys with POST /api/v1/keys",
                    source,
                )
            return None
        generated = None
        if not secret or known is not None:  # none yet, or that one was revoked, expired or not admin
            secret = generated = new_secret()
            _write_private(key_file, secret)
            if known is not None:
                log.warning(
                    "the admin key from %s is revoked, expired or not an admin key: a new one was "
                    "generated and written to %s",
                    source,
                    key_file,
                )
            source = "generated"
        taken = {k.name for k in self.registry.keys.all()}
        name = next(n for n in _admin_names() if n not in taken)
        self.registry.keys.create(
            name, key_hash=hash_key(secret), prefix=secret[:8], scopes=[Scope.ADMIN.value]
        )
        self.registry.audit.record(
            actor=SYSTEM_ACTOR,
            action="key.bootstrap",
            target=name,
            details={"source": source, "reason": "no active admin key"},
        )
        # the first start does this as a matter of course; later, every admin key was revoked or expired
        level = logging.WARNING if taken else logging.INFO
        log.log(level, "no active admin key: created the bootstrap admin key %r (from %s)", name, source)
        return generated


def _admin_names() -> Iterator[str]:
    yield ADMIN_KEY_NAME
    for n in itertools.count(2):
        yield f"{ADMIN_KEY_NAME}-{n}"


def _write_private(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` (mode 0600, replacing it atomically)."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def rfc3339(moment: datetime) -> str:
    """A timestamp as the API writes them: RFC 3339 in UTC with ``Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

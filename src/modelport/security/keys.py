"""API keys: random secrets shown once, stored as sha256 digests, carrying scopes."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from modelport.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from modelport.names import check_name
from modelport.registry import KeyRecord, Registry

KEY_PREFIX = "mp_"
MODEL_GLOB = re.compile(r"^[a-z0-9_*?-]{1,63}$")
ADMIN_KEY_NAME = "admin"


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
            "expires_at": expires_at and expires_at.isoformat(),
        }
        self.registry.audit.record(actor=by, action="key.create", target=name, details=details)
        return record, secret

    def revoke(self, name: str, *, by: str) -> KeyRecord:
        record = self.registry.keys.revoke(name)
        self.registry.audit.record(actor=by, action="key.revoke", target=name)
        return record

    def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        record = self.registry.keys.find_by_hash(hash_key(secret))
        if record is None or record.revoked_at is not None:
            raise Unauthenticated("invalid or revoked API key")
        who = Principal(record.name, record.scopes, record.expires_at, record.models, record.rate_limit)
        if who.expired():
            raise Unauthenticated("this API key has expired")
        return who

    def bootstrap_admin(self, data_dir: Path, configured: str | None) -> str | None:
        """Make sure an admin key exists. Returns the secret when it was generated now (print it once)."""
        key_file = data_dir / "admin.key"
        generated = None
        if configured:
            secret = configured
        elif key_file.exists():
            secret = key_file.read_text().strip()
        else:
            secret = generated = new_secret()
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret + "\n")
        self.registry.keys.upsert(
            ADMIN_KEY_NAME, key_hash=hash_key(secret), prefix=secret[:8], scopes=[Scope.ADMIN.value]
        )
        return generated

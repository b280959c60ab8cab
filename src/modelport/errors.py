"""One tree of domain errors, each with a stable code; the API maps codes to HTTP statuses."""

from __future__ import annotations


class ModelportError(Exception):
    """Base of every error modelport raises on purpose. ``code`` is stable and documented."""

    code = "internal"
    retry_after: float | None = None  # seconds; answered as a Retry-After header
    status_code: int | None = None  # the HTTP status it came with, when the SDK raised it
    version: int | None = None  # the version that failed the request, when one was reached (monitoring)

    def __init__(self, message: str, *, field: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status_code = status_code


class InvalidInput(ModelportError):
    code = "invalid_input"


class InvalidName(InvalidInput):
    code = "invalid_name"


class InvalidSpec(InvalidInput):
    """A well-formed request whose content cannot be carried out: an unknown estimator, a parameter out
    of its range, a target the dataset lacks (422, naming the field)."""

    code = "invalid_spec"


class NotFound(ModelportError):
    code = "not_found"


class Conflict(ModelportError):
    code = "conflict"


class UnsupportedFormat(InvalidInput):
    code = "unsupported_format"


class UnsafeFormat(InvalidInput):
    """A format that can run code on load (pickle and friends)."""

    code = "unsafe_format"


class UnsafeArchive(InvalidInput):
    code = "unsafe_archive"


class PayloadTooLarge(ModelportError):
    code = "payload_too_large"


class StorageFull(ModelportError):
    """The disk (or quota) ran out while writing; nothing half-written is kept."""

    code = "storage_full"


class NotReady(ModelportError):
    """The model or version exists but cannot serve (failed, pending, unloaded)."""

    code = "not_ready"


class IntegrityError(ModelportError):
    """Stored bytes do not match their recorded sha256."""

    code = "integrity_error"


class DecryptionError(IntegrityError):
    """An encrypted artifact cannot be read with the configured key."""

    code = "decryption_failed"


class LoadError(ModelportError):
    code = "load_error"


class OutOfMemory(LoadError):
    """The device (GPU or host) had no room for the version: it is marked failed with this reason."""

    code = "out_of_memory"


class InferenceFailed(ModelportError):
    code = "inference_failed"


class Overloaded(ModelportError):
    """Too much work queued: the caller should retry after a short while."""

    code = "overloaded"
    retry_after = 1.0


class RateLimited(ModelportError):
    """The key used up its request rate."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTimeout(ModelportError):
    code = "timeout"


class Unauthenticated(ModelportError):
    code = "unauthenticated"


class Forbidden(ModelportError):
    code = "forbidden"


class ConfigError(ModelportError):
    code = "config_error"


class ConnectionFailed(ModelportError):
    """No HTTP answer from the server: nothing listens there, the name does not resolve, the
    connection broke, or TLS failed. ``url`` is the server's base URL; ``status_code`` stays None."""

    code = "connection_failed"

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message, field="url")
        self.url = url


class CertificateRejected(ConnectionFailed):
    """The server's TLS certificate could not be verified (self-signed, unknown CA, wrong host name)."""

    code = "certificate_rejected"


def _subclasses(cls: type[ModelportError]) -> list[type[ModelportError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


ERRORS_BY_CODE: dict[str, type[ModelportError]] = {c.code: c for c in _subclasses(ModelportError)}

"""Settings: environment (prefix ``MODELPORT_``), optional ``modelport.toml``, then flags. Read once."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ByteSize, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from modelport import limits
from modelport.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELPORT_", toml_file="modelport.toml", extra="ignore")

    data_dir: Path = Path(".modelport")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    database_url: str | None = None
    store_url: str | None = None  # artifact store: file:///path or a plain path (s3:// with cluster mode)
    admin_key: str | None = None
    auth: bool = True
    max_upload_bytes: int = Field(2 * 1024**3, gt=0)
    max_request_bytes: int = Field(64 * 1024**2, gt=0)
    max_tensor_elements: int = Field(16 * 1024**2, gt=0)
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    max_concurrent_loads: int = Field(2, ge=1)
    encryption_key: str | None = None  # base64 of 32 random bytes: artifacts are stored AES-256-GCM encrypted
    # opt-in: pickle/joblib models, loaded only in a sandboxed worker process
    allow_pickle: bool = False
    sandbox_memory_bytes: ByteSize = Field(ByteSize(4 * 1024**3), gt=0)
    sandbox_load_cpu_seconds: int = Field(300, ge=1)
    archive_max_entries: int = Field(10_000, gt=0)
    archive_max_bytes: int = Field(8 * 1024**3, gt=0)
    # serving engine
    model_memory_budget: ByteSize = Field(ByteSize(4 * 1024**3), gt=0)
    # GPU memory versions may use; unset: 90% of the GPUs' memory (none without a GPU); 0: never a GPU
    gpu_memory_budget: ByteSize | None = Field(None, ge=0)
    request_timeout: float = Field(30.0, gt=0)
    # a whole text generation (/v1 chat and completions): long answers on a slow model take minutes
    generation_timeout: float = Field(600.0, gt=0)
    max_batch_size: int = Field(limits.MAX_BATCH_SIZE, ge=1, le=limits.BATCH_SIZE_LIMIT)
    max_batch_delay_ms: float = Field(limits.MAX_BATCH_DELAY_MS, ge=0, le=limits.BATCH_DELAY_LIMIT_MS)
    max_queue: int = Field(limits.MAX_QUEUE, ge=1, le=limits.QUEUE_LIMIT)
    max_batch_tokens: int = Field(limits.MAX_BATCH_TOKENS, ge=1, le=limits.BATCH_TOKENS_LIMIT)
    inference_threads: int = Field(default_factory=lambda: len(os.sched_getaffinity(0)), ge=1)  # usable cores
    # intra-op threads of deep-learning frameworks (torch); unset: the usable cores divided by --workers
    compute_threads: int | None = Field(None, ge=1, le=1024)
    reconcile_interval: float = Field(1.0, gt=0)
    # training jobs: how many run at once (cluster-wide), and each job's limits (a job may ask for less)
    max_jobs: int = Field(1, ge=1, le=64)
    job_memory_bytes: ByteSize = Field(ByteSize(4 * 1024**3), ge=64 * 1024**2)
    job_cpu_seconds: int = Field(3600, ge=1)
    job_wall_seconds: int = Field(3600, ge=1)
    job_threads: int = Field(1, ge=1, le=256)
    max_dataset_bytes: ByteSize = Field(ByteSize(512 * 1024**2), gt=0)
    # monitoring: the prediction log (per model), serving statistics, alerts, the dashboard's sessions
    prediction_log_max_bytes: ByteSize = Field(ByteSize(1024**3), gt=0)
    prediction_log_max_age: float = Field(7 * 86400.0, gt=0)
    stats_bucket_seconds: int = Field(10, ge=1, le=3600)
    stats_retention: float = Field(7 * 86400.0, gt=0)
    alert_interval: float = Field(15.0, gt=0)
    webhook_timeout: float = Field(5.0, gt=0)
    webhook_attempts: int = Field(8, ge=1, le=100)
    ui_session_seconds: int = Field(8 * 3600, ge=60)
    workers: int = Field(1, ge=1, le=256)
    access_log: bool = False
    allowed_hosts: list[str] = Field(default_factory=list)  # beyond loopback and the bind address
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def resolved_compute_threads(self) -> int:
        if self.compute_threads is not None:
            return self.compute_threads
        return max(1, len(os.sched_getaffinity(0)) // self.workers)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    @property
    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return (self.data_dir / "artifacts").resolve().as_uri()

    def to_env(self) -> dict[str, str]:
        """These settings as ``MODELPORT_*`` variables, for worker processes started by ``--workers``."""
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, list):
                value = json.dumps(value)
            if name == "data_dir":
                value = Path(value).resolve()
            env[f"MODELPORT_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return env

    def check(self) -> None:
        """Refuse configurations that would expose the server, or half a TLS setup."""
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError("TLS needs both --ssl-certfile and --ssl-keyfile")
        if not self.auth and not is_loopback(self.host):
            raise ConfigError(f"refusing to bind {self.host} with auth off: enable auth or bind 127.0.0.1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: Any) -> Settings:
    """Build settings; ``overrides`` (e.g. CLI flags) win over the environment and the TOML file.

    A value that does not fit raises ``ConfigError`` with one line naming where it came from (the flag
    for an override, else the variable or ``modelport.toml``) and what to write instead.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = [_problem(error, given) for error in exc.errors(include_url=False)]
        raise ConfigError("; ".join(problems), field=_field(exc.errors()[0]["loc"])) from None
    except SettingsError as exc:
        raise ConfigError(_unparsed(exc), field=_unparsed_field(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"modelport.toml is not valid TOML: {exc}") from None


_HINTS = {  # what to write, by the type of the field that refused a value
    "ByteSize": "write a size such as 4GiB or 512MB",
    "bool": "write true or false",
    "list": "write a JSON list, e.g. '[\"models.internal\"]'",
}


def _field(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]) if loc else ""


def _source(name: str, given: dict[str, Any]) -> str:
    if name in given:
        return "--" + name.replace("_", "-")
    env = f"MODELPORT_{name.upper()}"
    if any(var.upper() == env for var in os.environ):
        return env
    return f"{name} in modelport.toml"


def _hint(name: str) -> str:
    field = Settings.model_fields.get(name)
    annotation = repr(field.annotation) if field else ""
    hint = next((h for type_name, h in _HINTS.items() if type_name in annotation), "")
    return f"; {hint}" if hint else ""


def _problem(error: Any, given: dict[str, Any]) -> str:
    name = _field(error["loc"])
    if not name:
        return str(error["msg"])
    message = str(error["msg"])
    message = message[:1].lower() + message[1:]
    return f"invalid {_source(name, given)} {error.get('input')!r}: {message}{_hint(name)}"


_UNPARSED = re.compile(r'field "(?P<name>\w+)" from source "(?P<source>\w+)"')


def _unparsed_field(exc: SettingsError) -> str | None:
    found = _UNPARSED.search(str(exc))
    return found["name"] if found else None


def _unparsed(exc: SettingsError) -> str:
    """pydantic-settings reads list and dict settings as JSON; say so, with the value and an example."""
    name = _unparsed_field(exc)
    if name is None:
        return str(exc)
    env = f"MODELPORT_{name.upper()}"
    value = next((v for var, v in os.environ.items() if var.upper() == env), None)
    if value is None:
        return f"{name} in modelport.toml cannot be read: {exc.__cause__ or exc}"
    field = Settings.model_fields.get(name)
    if field is None or "list" not in repr(field.annotation):
        return f"{env} is not JSON (got {value!r}): write it as JSON"
    example = json.dumps([part.strip() for part in value.split(",") if part.strip()] or ["..."])
    return f"{env} is not JSON (got {value!r}): write a JSON list, e.g. {env}='{example}'"

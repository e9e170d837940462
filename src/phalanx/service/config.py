"""The service's configuration: a TOML file (`phalanx serve --config
phalanx.toml`), overridden by `PHALANX_*` environment variables (nested
keys with `__`: `PHALANX_SMTP__PASSWORD`), overridden by command-line
flags. `contrib/phalanx.example.toml` shows every key.

Without `--config`, `$PHALANX_CONFIG` names the file; without either,
there is none and the defaults stand. Relative paths in the file are taken
from the file's folder (a unit file's working directory is not where the
config lives); from the environment or the command line, from the current
folder.

A bad file, key or value is one `ConfigError` naming the file (or the
variable) and the key, never a traceback; the commands exit 2 on it. Secrets
(`smtp.password`, `database_url`) are `SecretStr`: their repr is masked, so
printing or logging the config never shows them, and errors never echo them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic import field_validator as validates
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

CONFIG_ENV = "PHALANX_CONFIG"  # the config file, when --config is not given
ENV_PREFIX = "PHALANX_"
SECRET_KEYS = {"password", "database_url"}
_PATH_KEYS = ("data_dir", "tls_cert", "tls_key")


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class RepoConfig(BaseModel):
    """A definitions repo: a folder (`type = "dir"`, watched) or a git
    repository (`type = "git"`, pulled every `poll_seconds`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""  # default: the folder's or repository's name
    type: Literal["dir", "git"] = "dir"
    path: Path | None = None  # dir: the folder; git: where to clone (default: in data_dir)
    url: str | None = None  # git only
    branch: str | None = None  # git only; default: the remote's default branch
    poll_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> RepoConfig:
        if self.type == "dir":
            if self.path is None:
                raise ValueError('a repo of type "dir" needs a path')
            if self.url is not None or self.branch is not None:
                raise ValueError('url and branch are for repos of type "git"')
        elif not self.url:
            raise ValueError('a repo of type "git" needs a url')
        if not self.name:
            source = self.path.name if self.path is not None else (self.url or "")
            name = source.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
            object.__setattr__(self, "name", name or "repo")
        return self


class SmtpConfig(BaseModel):
    """Where alert mail goes out. No host: no mail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    user: str | None = None
    password: SecretStr | None = None  # best from PHALANX_SMTP__PASSWORD
    sender: str = "phalanx@localhost"
    timeout: float = Field(default=30.0, gt=0)


_FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("phalanx config file", default=None)


class ServiceConfig(BaseSettings):
    """Everything `phalanx serve` and the admin commands read."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    listen: str = "127.0.0.1:8470"
    data_dir: Path = Path("phalanx-data")
    database_url: SecretStr | None = None  # default: SQLite, data_dir/phalanx.db
    public_url: str | None = None  # links in mail; default: http(s)://listen
    repos: list[RepoConfig] = Field(default_factory=list)
    anonymous_read: bool = False
    heartbeat_timeout: float = Field(default=10.0, gt=0)
    connect_timeout: float = Field(default=60.0, gt=0)
    keep_days: float | None = Field(default=90.0, gt=0)  # per suite, unless it says
    keep_runs: int | None = Field(default=None, ge=1)
    session_hours: float = Field(default=12.0, gt=0)
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Who `provider: local` agents run as when the service runs as root
    # (providers/agentenv.py); "" runs them as root, next to the service's data.
    local_agent_user: str = "nobody"
    # phalanx.toml may be shared with combinatorial runs; their table is theirs.
    combinatorial: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags over the environment over the file over the defaults.
        return (
            init_settings,
            env_settings,
            InitSettingsSource(settings_cls, _FILE_VALUES.get() or {}),
        )

    @validates("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServiceConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        names = [r.name for r in self.repos]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"two repos are named {', '.join(dupes)}: give them distinct names")
        return self

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    def database(self) -> str:
        """The database URL (with its password: never log it; see `safe_database`)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        from phalanx.store.db import default_url

        return default_url(self.data_dir)

    def safe_database(self) -> str:
        """The database URL for a log line: the password masked."""
        from phalanx.store.db import safe_url

        return safe_url(self.database())

    def base_url(self) -> str:
        """Where the service is reached: `public_url`, else what it listens on."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_cert is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def split_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:8470` for IPv6) as (host, port); port 0 picks a free one."""
    host, colon, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host, int(port)


def load_config(path: Path | None = None, **overrides: Any) -> ServiceConfig:
    """The configuration from `path` (default: `$PHALANX_CONFIG`, else no
    file), the environment, and `overrides` (field values from the command
    line; None means not given), in rising precedence."""
    if path is None and os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
    values = _read(path) if path is not None else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    with _file_values(values):
        try:
            return ServiceConfig(**given)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, path, given)) from None


@contextmanager
def _file_values(values: dict[str, Any]) -> Iterator[None]:
    token = _FILE_VALUES.set(values)
    try:
        yield
    finally:
        _FILE_VALUES.reset(token)


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _anchor(values, path.absolute().parent)


def _anchor(values: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Relative paths in the file, taken from the file's folder."""

    def anchored(value: Any) -> Any:
        return str(folder / value) if isinstance(value, str) and value else value

    out = dict(values)
    for key in _PATH_KEYS:
        if key in out:
            out[key] = anchored(out[key])
    if isinstance(out.get("repos"), list):
        out["repos"] = [
            {**r, "path": anchored(r["path"])} if isinstance(r, dict) and "path" in r else r
            for r in out["repos"]
        ]
    return out


def _key(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _explain(exc: ValidationError, path: Path | None, given: dict[str, Any]) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(
            p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function"))
        )
        # A model-level check names no key: say the section it is about.
        key = _key(loc) or "(top level)"
        source = _source(loc, path, given)
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            secret = any(str(p) in SECRET_KEYS for p in loc)
            value = error.get("input")
            # Our own checks quote the value already where it helps.
            echo = error["type"] != "value_error" and not secret
            if echo and isinstance(value, str | int | float) and len(repr(value)) < 80:
                message += f" (got {value!r})"
        problems.append(f"{source}: {key}: {message}")
    return "\n".join(problems)


def _source(loc: tuple[int | str, ...], path: Path | None, given: dict[str, Any]) -> str:
    """Where the bad value came from: a flag, a variable, or the file."""
    if loc and loc[0] in given:
        return f"--{str(loc[0]).replace('_', '-')}"
    names = [p for p in loc if isinstance(p, str)]
    environ = {k.upper() for k in os.environ}
    for depth in range(len(names), 0, -1):
        variable = ENV_PREFIX + "__".join(names[:depth]).upper()
        if variable in environ:
            return f"environment {variable}"
    return str(path) if path is not None else "defaults"

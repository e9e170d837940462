"""Settings for combinatorial runs: ``[combinatorial]`` in ``phalanx.toml``,
overridden by ``PHALANX_COMBINATORIAL_*`` environment variables, overridden in
turn by arguments to ``run_tests``."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CONFIG_ENV = "PHALANX_CONFIG"  # path of phalanx.toml, when not ./phalanx.toml
DEFAULT_FILE = Path("phalanx.toml")


class CombinatorialSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHALANX_COMBINATORIAL_", extra="ignore")

    executor: str = Field(
        default="local",
        description="local | threads | dask://HOST:PORT | dask-ssh://H1,H2,... | dask-local",
    )
    max_workers: int | None = Field(default=None, ge=1)
    dask_timeout: float = Field(default=30.0, gt=0, description="seconds to wait for dask workers")


def read_table(path: Path | None = None) -> dict[str, Any]:
    """The ``[combinatorial]`` table; a missing file or table is empty, not an error."""
    file = path if path is not None else Path(os.environ.get(CONFIG_ENV, DEFAULT_FILE))
    if not file.is_file():
        return {}
    with file.open("rb") as f:
        table = tomllib.load(f).get("combinatorial", {})
    if not isinstance(table, dict):
        raise ValueError(f"{file}: [combinatorial] must be a table")
    return table


def load_settings(path: Path | None = None, **overrides: Any) -> CombinatorialSettings:
    """Settings from ``path`` (default: $PHALANX_CONFIG, else ./phalanx.toml), the
    environment, and ``overrides`` (None values are ignored), in rising precedence."""
    given = {k: v for k, v in overrides.items() if v is not None}
    from_env = CombinatorialSettings(**given)
    table = read_table(path)
    from_file = {
        k: v
        for k, v in table.items()
        if k in CombinatorialSettings.model_fields and k not in from_env.model_fields_set
    }
    if not from_file:
        return from_env
    return CombinatorialSettings(**from_file, **given)

"""The service's configuration: a TOML file, PHALANX_* variables over it,
flags over both, and one clear line for whatever is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.service.config import ConfigError, ServiceConfig, load_config

EXAMPLE = Path(__file__).parents[2] / "contrib" / "phalanx.example.toml"

CONFIG = """
listen = "0.0.0.0:9000"
data_dir = "data"
keep_runs = 20

[[repos]]
name = "defs"
path = "definitions"

[[repos]]
type = "git"
url = "https://git.example.org/team/suites.git"
branch = "main"
poll_seconds = 30

[smtp]
host = "mail.example.org"
port = 587
starttls = true
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("PHALANX_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "etc" / "phalanx.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    config = load_config()
    assert (config.host, config.port) == ("127.0.0.1", 8470)
    assert config.data_dir == Path("phalanx-data")
    assert config.database() == f"sqlite+aiosqlite:///{Path('phalanx-data').absolute()}/phalanx.db"
    assert not config.anonymous_read and config.repos == []
    assert config.base_url() == "http://127.0.0.1:8470"


def test_a_file_with_paths_from_its_own_folder(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    config = load_config(path)
    assert config.listen == "0.0.0.0:9000" and config.keep_runs == 20
    assert config.data_dir == tmp_path / "etc" / "data"
    local, remote = config.repos
    assert (local.name, local.type, local.path) == ("defs", "dir", tmp_path / "etc" / "definitions")
    assert (remote.name, remote.type, remote.branch, remote.poll_seconds) == (
        "suites", "git", "main", 30.0,
    )  # fmt: skip
    assert (config.smtp.host, config.smtp.port, config.smtp.starttls) == (
        "mail.example.org", 587, True,
    )  # fmt: skip


def test_the_environment_overrides_the_file_and_flags_override_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, CONFIG)
    monkeypatch.setenv("PHALANX_LISTEN", "127.0.0.1:9100")
    monkeypatch.setenv("PHALANX_SMTP__PORT", "2525")
    monkeypatch.setenv("PHALANX_SMTP__PASSWORD", "s3cret-pw")
    monkeypatch.setenv("PHALANX_DATABASE_URL", "postgresql://phalanx:db-pw@db.example.org/phalanx")
    monkeypatch.setenv("PHALANX_AGENT_TOKEN", "not ours: the agent's")  # ignored, not an error
    config = load_config(path)
    assert config.listen == "127.0.0.1:9100"
    assert config.smtp.port == 2525 and config.smtp.host == "mail.example.org"
    assert config.smtp.password is not None
    assert config.smtp.password.get_secret_value() == "s3cret-pw"
    assert config.database() == "postgresql://phalanx:db-pw@db.example.org/phalanx"
    assert "db-pw" not in config.safe_database()
    # Printing the config shows no secret.
    assert "s3cret-pw" not in repr(config) and "db-pw" not in repr(config)
    flagged = load_config(path, listen="[::1]:0", data_dir=tmp_path / "elsewhere")
    assert (flagged.host, flagged.port) == ("::1", 0)
    assert flagged.data_dir == tmp_path / "elsewhere"


def test_phalanx_config_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHALANX_CONFIG", str(write(tmp_path, CONFIG)))
    assert load_config().listen == "0.0.0.0:9000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[smtp]\nprot = 25\n", "phalanx.toml: smtp.prot: unknown key"),
        ('listen = "8470"\n', "phalanx.toml: listen: '8470' is not HOST:PORT"),
        ("keep_days = -1\n", "phalanx.toml: keep_days: Input should be greater than 0"),
        ('[[repos]]\ntype = "git"\n', 'phalanx.toml: repos[0]: a repo of type "git" needs a url'),
        ('tls_cert = "c.pem"\n', "phalanx.toml: (top level): tls_cert and tls_key go together"),
        ("listen = \n", "phalanx.toml: not valid TOML: Invalid value (at line 1, column 10)"),
    ],
)
def test_a_bad_file_is_one_error_naming_the_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path.parent) + "/" + expected)
    assert len(str(caught.value).splitlines()) == 1


def test_a_bad_variable_is_named_and_a_secret_is_never_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHALANX_SMTP__PORT", "lots")
    with pytest.raises(ConfigError, match=r"^environment PHALANX_SMTP__PORT: smtp\.port: .*'lots'"):
        load_config(write(tmp_path, CONFIG))
    monkeypatch.delenv("PHALANX_SMTP__PORT")
    path = write(tmp_path, '[smtp]\npassword = ["hunter2-pw"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "smtp.password" in str(caught.value) and "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.toml")


def test_the_example_config_loads_as_written(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, ServiceConfig)
    assert config.listen == ServiceConfig().listen


def test_an_admin_command_with_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[smtp]\nprot = 25\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "token", "list", "--config", str(path)],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {path}: smtp.prot: unknown key"
    assert not (tmp_path / "phalanx-data").exists()

"""The admin commands (`token …`, `user …`, `db upgrade`) work on the store
alone: the web app's stack (FastAPI, Starlette, Jinja, uvicorn) and the VM
machinery stay out of them. How fast `phalanx serve` answers /healthz is
measured by bench/serve.py."""

from __future__ import annotations

from pathlib import Path

from tests.tree.test_light_start import _imports_of

WEB_STACK = {"fastapi", "starlette", "jinja2", "uvicorn", "httpx"}


def test_admin_commands_import_none_of_the_web_stack(tmp_path: Path) -> None:
    data = ["--data", str(tmp_path / "data")]
    for args in (
        ["db", "upgrade", *data],
        ["token", "create", "h1.t.test", *data],
        ["token", "list", *data],
        ["user", "list", *data],
    ):
        assert _imports_of(args, tmp_path, WEB_STACK) == {"code": 0, "heavy": []}, args

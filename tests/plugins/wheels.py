"""Build a plug-in's wheel from its modules and entry points, and install it
with pip into a folder of its own: what `pip install phalanx-demo` does on a
user's machine, without an index or a build backend."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

PIP_TIMEOUT = 120.0  # seconds; pip itself starts in about one


def build_wheel(
    out: Path, dist: str, version: str, modules: dict[str, str], entry_points: str
) -> Path:
    """A pure-Python wheel of `modules` (name → source) declaring `entry_points`
    (the text of an entry_points.txt)."""
    stem = f"{dist.replace('-', '_')}-{version}"
    info = f"{stem}.dist-info"
    files = {f"{name}.py": source for name, source in modules.items()}
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
    files[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: phalanx-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{info}/entry_points.txt"] = entry_points
    record = [
        f"{path},{_digest(text.encode())},{len(text.encode())}" for path, text in files.items()
    ]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _digest(data: bytes) -> str:
    raw = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pip_install(wheel: Path, target: Path) -> None:
    """`wheel` installed into `target` (a folder for PYTHONPATH) by pip."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=PIP_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

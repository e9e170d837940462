"""The run folder keeps what programs wrote, byte for byte."""

from __future__ import annotations

from pathlib import Path

from phalanx import layout
from phalanx.events import HostOutput, HostStageEnded
from phalanx.model import HostResult, Status
from phalanx.store.files import RunFolder


def test_output_is_stored_as_the_bytes_written_whatever_the_pieces(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    pieces = [b"caf\xc3", b"\xa9 \xff\xfe not utf-8\r\n", b"\x1b]0;title\x07", b"\x00end"]
    for piece in pieces:
        folder(HostOutput("c", "run", "h1", piece))
    folder(HostOutput("c", "run", "h2", b"other host\n"))
    folder(HostStageEnded("c", "run", HostResult(host="h1", status=Status.PASSED)))
    folder.close()
    stored = (tmp_path / "run" / layout.output_path("c", "run", "h1")).read_bytes()
    assert stored == b"".join(pieces)
    other = (tmp_path / "run" / layout.output_path("c", "run", "h2")).read_bytes()
    assert other == b"other host\n"


def test_a_stage_that_prints_nothing_has_no_output_file(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder(HostStageEnded(None, "initialize", HostResult(host="h1", status=Status.PASSED)))
    folder.close()
    assert not (tmp_path / "run" / layout.output_path(None, "initialize", "h1")).exists()

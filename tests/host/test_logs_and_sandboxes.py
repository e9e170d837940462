"""Two things an agent keeps on its host's disk for a stage: what a log
file gained while the stage ran (`LogWatch`), and tree tests' sandbox
folders (`Sandboxes`), kept when a test left files and handed on when it
left none. Real files in tmp_path."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from phalanx.host import logs
from phalanx.host.logs import LogWatch
from phalanx.host.sandbox import Sandboxes, sandbox_name
from phalanx.wire.messages import LogFile


def gained(files: list[LogFile]) -> dict[str, bytes | None]:
    """Each collected file's bytes by the name the suite gave (None: missing)."""
    return {f.path: None if f.missing else base64.b64decode(f.content_b64 or "") for f in files}


def test_only_what_a_log_gained_during_the_stage_is_collected(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("before the stage\n")
    watch = LogWatch(["server.log"], tmp_path)
    with log.open("a") as f:
        f.write("during the stage\n")
    assert gained(watch.collect()) == {"server.log": b"during the stage\n"}


def test_a_log_truncated_or_rotated_during_the_stage_is_collected_whole(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("a long history before the stage\n" * 10)
    watch = LogWatch([str(log)], tmp_path)
    log.write_text("fresh\n")  # shorter than where it was when the stage started
    assert gained(watch.collect()) == {str(log): b"fresh\n"}


def test_a_log_made_during_the_stage_is_collected_and_one_never_made_says_missing(
    tmp_path: Path,
) -> None:
    watch = LogWatch(["new.log", "never.log"], tmp_path)
    (tmp_path / "new.log").write_text("born in the stage\n")
    found = watch.collect()
    assert gained(found) == {"new.log": b"born in the stage\n", "never.log": None}
    assert [f.missing for f in found] == [False, True]


def test_a_pattern_collects_every_file_it_matches_relative_to_the_workdir(
    tmp_path: Path,
) -> None:
    (tmp_path / "logs").mkdir()
    for name in ("b.log", "a.log", "notes.txt"):
        (tmp_path / "logs" / name).write_text("old\n")
    watch = LogWatch(["logs/*.log"], tmp_path)
    for name in ("a.log", "b.log", "notes.txt"):
        with (tmp_path / "logs" / name).open("a") as f:
            f.write(f"new in {name}\n")
    assert gained(watch.collect()) == {
        "logs/a.log": b"new in a.log\n",
        "logs/b.log": b"new in b.log\n",
    }


def test_a_log_that_gained_too_much_is_cut_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "MAX_LOG_BYTES", 10)
    log = tmp_path / "chatty.log"
    log.write_text("")
    watch = LogWatch(["chatty.log"], tmp_path)
    log.write_text("0123456789abcdef")
    (found,) = watch.collect()
    assert found.truncated
    assert base64.b64decode(found.content_b64 or "") == b"0123456789"


def test_a_folder_where_a_log_was_expected_is_missing(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    (found,) = LogWatch(["adir"], tmp_path).collect()
    assert found.missing


# --- sandboxes ----------------------------------------------------------------------


def test_a_sandbox_a_test_left_empty_is_handed_on_renamed_for_the_next(tmp_path: Path) -> None:
    boxes = Sandboxes(tmp_path / "sandboxes")
    first = Path(boxes.take("tests/one"))
    assert first.is_dir() and first.name == "tests_one"
    inode = first.stat().st_ino
    boxes.give_back(str(first))
    second = Path(boxes.take("tests/two"))
    assert second.name == "tests_two" and second.is_dir()
    assert second.stat().st_ino == inode  # the same folder, renamed
    assert not first.exists()


def test_a_sandbox_a_test_left_files_in_is_kept_where_it_is(tmp_path: Path) -> None:
    boxes = Sandboxes(tmp_path / "sandboxes")
    kept = Path(boxes.take("writes"))
    (kept / "core").write_text("evidence")
    boxes.give_back(str(kept))
    other = Path(boxes.take("next"))
    assert other != kept and other.is_dir()
    assert (kept / "core").read_text() == "evidence"
    boxes.give_back(str(other))
    boxes.close()
    assert (kept / "core").read_text() == "evidence"  # kept past the end
    assert not other.exists()  # the spare went


def test_the_same_test_twice_finds_its_kept_folder_and_keeps_its_files(tmp_path: Path) -> None:
    boxes = Sandboxes(tmp_path / "sandboxes")
    spare = Path(boxes.take("spare"))
    boxes.give_back(str(spare))
    kept = Path(boxes.take("again"))
    (kept / "left").write_text("1")
    boxes.give_back(str(kept))
    again = Path(boxes.take("again"))  # a spare cannot be renamed over it
    assert again == kept and (again / "left").read_text() == "1"


def test_closing_removes_the_spares_and_the_root_when_nothing_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "sandboxes"
    boxes = Sandboxes(root)
    for name in ("a", "b"):
        boxes.give_back(boxes.take(name))
    boxes.close()
    assert not root.exists()


def test_a_spare_removed_behind_the_sandboxes_back_is_skipped(tmp_path: Path) -> None:
    boxes = Sandboxes(tmp_path / "sandboxes")
    spare = Path(boxes.take("a"))
    boxes.give_back(str(spare))
    spare.rmdir()  # someone cleaned up
    made = Path(boxes.take("b"))
    assert made.is_dir() and made.name == "b"


@pytest.mark.parametrize(
    ("test", "folder"),
    [("tests/a b", "tests_a_b"), ("x@1+2#3", "x@1+2#3"), ("../up", ".._up"), ("", "_")],
)
def test_a_sandbox_is_named_for_its_test_without_leaving_the_root(test: str, folder: str) -> None:
    assert sandbox_name(test) == folder

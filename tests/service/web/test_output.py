"""The output viewer's pages: whole lines, nothing lost or doubled between
pages, highlighting and search."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.service.web.output import find, kind_of, read_page


def _walk(path: Path, page: int) -> bytes:
    """Follow "next" from the start; what the pages showed, joined."""
    shown_bytes, offset = b"", 0
    while True:
        shown = read_page(path, offset, page=page, exact=offset > 0)
        assert shown.start == offset  # no gap, no overlap
        assert shown.end > offset or shown.at_end  # always moves on
        piece = path.read_bytes()[shown.start : shown.end]
        assert [line.text for line in shown.lines] == piece.decode().splitlines()
        number = path.read_bytes()[: shown.start].count(b"\n") + 1  # numbered as from the start
        assert [line.number for line in shown.lines] == list(
            range(number, number + len(shown.lines))
        )
        shown_bytes += piece
        if shown.at_end:
            return shown_bytes
        offset = shown.end


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(alphabet="abc xyz", min_size=0, max_size=40), min_size=1, max_size=60),
    st.integers(min_value=8, max_value=200),
)
def test_following_next_shows_every_byte_once(
    tmp_path_factory, lines: list[str], page: int
) -> None:
    path = tmp_path_factory.mktemp("out") / "log"
    path.write_text("\n".join(lines) + "\n")
    assert _walk(path, page) == path.read_bytes()


def test_a_page_in_the_middle_starts_at_a_line_and_keeps_the_files_numbers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log"
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    middle = read_page(path, 5003, page=100)
    assert middle.lines[0].text.startswith("line ")
    # "line i" is the file's line i + 1, wherever the page begins
    for shown in (middle, read_page(path, 5003, page=100, exact=True), read_page(path, 7777)):
        assert all(line.number == int(line.text.split()[1]) + 1 for line in shown.lines)
    assert path.read_bytes()[middle.start - 1 : middle.start] == b"\n"
    first = read_page(path, 0, page=100)
    assert [line.number for line in first.lines[:3]] == [1, 2, 3]
    at_line = read_page(path, first.first_end, page=100)
    assert at_line.lines[0].text == "line 1"


def test_lines_are_classified_and_search_finds_the_line(tmp_path: Path) -> None:
    assert kind_of(b"ERROR: disk full") == "error"
    assert kind_of(b"Warning: slow") == "warning"
    assert kind_of(b"all tests passed") == "success"
    assert kind_of(b"errorless") == ""
    path = tmp_path / "log"
    path.write_bytes(b"x" * 3_000_000 + b"\nhere is the Needle\n" + b"tail\n")
    at = find(path, "needle", 0)
    assert at == 3_000_001
    assert find(path, "needle", at + 1) == at  # the same line
    assert find(path, "needle", at + len("here is the Needle\n")) is None
    shown = read_page(path, at, query="NEEDLE")
    assert shown.lines[0].hit and shown.lines[0].text == "here is the Needle"

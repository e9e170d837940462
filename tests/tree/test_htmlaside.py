"""report.html written by a helper forked when a tree run starts
(tree/htmlaside.py): the same page as written in the run's own process, and
the page still written, by the run, when the helper cannot."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.processes import run_folder, wait_for
from tests.tree.helpers import make_tree, phalanx

PASS = "#!/bin/sh\necho fine\n"
FAIL = "#!/bin/sh\necho 'went wrong' >&2\nexit 3\n"
CONFIG = "testinfo:\n    summary: 'x'\n"

# Run in a process of its own: the helper is forked only by a process with
# one thread (pytest's workers have more).
DRIVER = """
import json, os, signal, sys
from pathlib import Path

from phalanx.tree.htmlaside import HtmlAside

run_dir, what = Path(sys.argv[1]), sys.argv[2]
aside = HtmlAside.start()
assert aside is not None, "not forked"
helper = aside.pid
if what == "killed":
    os.kill(helper, signal.SIGKILL)
if what == "closed":
    aside.close()
    done = None
else:
    links = [
        ("results.json", run_dir / "results.json"),
        ("JUnit XML", run_dir / "junit.xml"),
        ("TAP", run_dir / "results.tap"),
    ]
    aside.ask(run_dir / "results.json", run_dir / "aside.html", links, run_dir)
    done = aside.finish()
try:
    os.kill(helper, 0)
    gone = False
except ProcessLookupError:
    gone = True
print(json.dumps({"wrote": done, "helper_gone": gone}))
"""


def drive(run_dir: Path, what: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(run_dir), what],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def a_run(tmp_path: Path) -> Path:
    make_tree(tmp_path, {"good": (CONFIG, PASS), "bad": (CONFIG, FAIL)})
    done = phalanx("tests", "-j", "2", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    (run_dir,) = (tmp_path / "phalanx-results").iterdir()
    return run_dir


def test_a_tree_runs_page_is_the_page_its_results_json_renders(tmp_path: Path) -> None:
    from phalanx.report.html import write_html

    run_dir = a_run(tmp_path)
    page = (run_dir / "report.html").read_text()
    assert "tests/bad" in page and "went wrong" in page
    # Its links lead to the run's files (the run's folder was named relative
    # to where phalanx ran).
    for name in ("results.json", "junit.xml", "results.tap"):
        assert f'href="{name}"' in page
    links = [
        ("results.json", run_dir / "results.json"),
        ("JUnit XML", run_dir / "junit.xml"),
        ("TAP", run_dir / "results.tap"),
    ]
    report = json.loads((run_dir / "results.json").read_text())
    write_html(report, run_dir / "here.html", links=links, run_dir=run_dir)
    assert (run_dir / "here.html").read_text() == page


def test_the_helper_writes_the_page_and_is_reaped(tmp_path: Path) -> None:
    run_dir = a_run(tmp_path)
    assert drive(run_dir, "asked") == {"wrote": True, "helper_gone": True}
    assert (run_dir / "aside.html").read_text() == (run_dir / "report.html").read_text()


def test_a_helper_that_died_says_so_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = a_run(tmp_path)
    assert drive(run_dir, "killed") == {"wrote": False, "helper_gone": True}
    assert not (run_dir / "aside.html").exists()


def test_a_helper_asked_for_nothing_ends(tmp_path: Path) -> None:
    run_dir = a_run(tmp_path)
    assert drive(run_dir, "closed") == {"wrote": None, "helper_gone": True}


def test_a_page_the_helper_did_not_write_is_written_by_the_run(tmp_path: Path) -> None:
    """A run whose helper is killed as soon as it is forked still has its
    report.html: the run writes it."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(
        "import os, signal\n"
        "import phalanx.tree.htmlaside as aside\n"
        "started = aside.HtmlAside.start.__func__\n"
        "def start(cls):\n"
        "    found = started(cls)\n"
        "    assert found is not None\n"
        "    os.kill(found.pid, signal.SIGKILL)\n"
        "    return found\n"
        "aside.HtmlAside.start = classmethod(start)\n"
    )
    path = os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")]))
    make_tree(tmp_path, {"good": (CONFIG, PASS)})
    done = phalanx("tests", cwd=tmp_path, env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "phalanx-results").iterdir()
    assert "tests/good" in (run_dir / "report.html").read_text()


def test_ctrl_c_to_the_whole_group_still_gives_the_page(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the run, its tests and its page's helper
    at once: the cancelled run's page is written all the same, whole."""
    hangs = '#!/bin/sh\ntouch "$PHALANX_RESULTS/running"\nsleep 300\n'
    make_tree(tmp_path, {"fast": (CONFIG, PASS), "hangs": (CONFIG, hangs)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "phalanx.cli", "run", "tests", "-j", "1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        run = run_folder(tmp_path, proc)
        wait_for(run / "running", proc)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == 130, out + err
    page = (run / "report.html").read_text()
    assert "tests/hangs" in page and "cancelled" in page
    assert not list(run.glob(".report.html.*")), "a half-written page was left"

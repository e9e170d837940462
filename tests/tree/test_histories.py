"""Operation histories in a tree run (`phalanx run TREE`): a test's
`phalanx-op` (shell) and `phalanx.history.op` (Python) records are its
history in results.json and the run folder's files, judged by the
`check:` of its test-config.yaml's `properties:`; a test that records
nothing has no history; a bad `check:` is named with its file and key."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

from tests.tree.helpers import make_tree, phalanx, reasons, results, statuses

CHECKED = "properties:\n    check: register\n"
SHELL = """\
#!/bin/sh
set -e
phalanx-op --key x --process c1 write 1 -- true
phalanx-op --key x --process c1 read -- echo 1
"""
# A stale read: write 2 completes, then a read sees 1.
PYTHON = f"""\
#!{sys.executable}
from phalanx import history
with history.op("write", 1, key="x", client="py"):
    pass
with history.op("write", 2, key="x", client="py"):
    pass
with history.op("read", key="x", client="py") as o:
    o.ok(1)
"""


def test_a_tree_tests_records_are_its_history_judged_by_its_check(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "shell": (CHECKED, SHELL),
            "stale": (CHECKED, PYTHON),
            "quiet": ("testinfo:\n    summary: q\n", "#!/bin/sh\ntrue\n"),
        },
    )
    done = phalanx("tests", "-j", "2", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    data = results(tmp_path)
    assert statuses(data) == {"tests/quiet": "passed", "tests/shell": "passed",
                              "tests/stale": "failed"}  # fmt: skip
    assert reasons(data)["tests/stale"] == "history not linearizable on key x"
    cases = {c["name"]: c for c in data["cases"]}
    assert cases["tests/quiet"]["history"] is None

    shell = cases["tests/shell"]["history"]
    assert (shell["check"], shell["valid"]) == ("register", True)
    # The process: this machine's name (a tree runs here) and the client.
    client = f"{socket.gethostname()}/c1"
    assert [(e["process"], e["type"], e["f"], e["value"]) for e in shell["events"]] == [
        (client, "invoke", "write", 1), (client, "ok", "write", 1),
        (client, "invoke", "read", None), (client, "ok", "read", 1),
    ]  # fmt: skip
    stale = cases["tests/stale"]["history"]
    assert stale["valid"] is False and stale["windows"]

    (run,) = (tmp_path / "phalanx-results").iterdir()
    lines = (run / shell["file"]).read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["invoke", "ok", "invoke", "ok"]
    assert (run / stale["file"]).with_suffix(".edn").is_file()
    assert not (run / ".recording").exists()  # the records being made went with the run


def test_a_check_that_is_no_model_is_named_with_its_file_and_key(tmp_path: Path) -> None:
    make_tree(tmp_path, {"bad": ("properties:\n    check: queue\n", "#!/bin/sh\ntrue\n")})
    done = phalanx("tests", cwd=tmp_path)
    data = results(tmp_path)
    assert statuses(data) == {"tests/bad": "skipped"}
    reason = reasons(data)["tests/bad"] or ""
    assert "test-config.yaml" in reason and "properties.check" in reason, reason
    assert "must be one of register, set, counter, not 'queue'" in reason, done.stdout

"""`phalanx check` on history files in each format it reads, as a user
runs it: a real process, its exit code and what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PHALANX = [sys.executable, "-m", "phalanx"]


def check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PHALANX, "check", *map(str, args)], capture_output=True, text=True, timeout=60
    )


STALE_JSONL = """\
{"process": "h1/c0", "type": "invoke", "f": "write", "key": "x", "value": 1, "time": 0.0}
{"process": "h1/c0", "type": "ok", "f": "write", "key": "x", "value": 1, "time": 0.5}
{"process": "h2/c0", "type": "invoke", "f": "write", "key": "x", "value": 2, "time": 1.0}
{"process": "h2/c0", "type": "ok", "f": "write", "key": "x", "value": 2, "time": 1.5}
{"process": "h3/c0", "type": "invoke", "f": "read", "key": "y", "value": null, "time": 1.6}
{"process": "h3/c0", "type": "ok", "f": "read", "key": "y", "value": null, "time": 1.7}
{"process": "h1/c0", "type": "invoke", "f": "read", "key": "x", "value": null, "time": 2.0}
{"process": "h1/c0", "type": "ok", "f": "read", "key": "x", "value": 1, "time": 2.5}
"""


def test_a_stale_read_in_json_lines_exits_1_with_its_window(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text(STALE_JSONL)
    done = check("--model", "register", history)
    assert done.returncode == 1, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == f"{history}: history not linearizable on key x"
    assert out[1] == "key x: these 2 operations cannot be ordered"
    assert out[2].split()[:5] == ["h2/c0", "1.000000", "..", "1.500000", "write"]
    assert out[3].split()[:6] == ["h1/c0", "2.000000", "..", "2.500000", "read", "→"]
    assert f"({history}:7)" in out[3]


def test_a_valid_history_exits_0(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text(STALE_JSONL.replace('"value": 1, "time": 2.5', '"value": 2, "time": 2.5'))
    done = check("--model", "register", history)
    assert (done.returncode, done.stdout.strip()) == (
        0,
        f"{history}: history valid (register, 2 key(s))",
    )


EDN = """[{:process 0, :type :invoke, :f :write, :value 3}
 {:process 1, :type :invoke, :f :cas, :value [3 4]}
 {:process 0, :type :ok, :f :write, :value 3}
 {:process :nemesis, :type :info, :f :start, :value nil}
 {:process 1, :type :ok, :f :cas, :value [3 4]}
 {:process 2, :type :invoke, :f :read, :value nil}
 {:process 2, :type :ok, :f :read, :value %s}
 {:process 3, :type :invoke, :f :write, :value 5}
 {:process 3, :type :info, :f :write, :value 5}]
"""


def test_jepsen_history_edn_is_read_with_cas_pairs_nil_and_the_nemesis_left_out(
    tmp_path: Path,
) -> None:
    good, bad = tmp_path / "good.edn", tmp_path / "bad.edn"
    good.write_text(EDN % "4")
    bad.write_text(EDN % "3")
    assert check("--model", "register", good).returncode == 0
    done = check("--model", "register", bad)
    assert done.returncode == 1
    assert "read → 3" in done.stdout
    assert f"({bad}: operation 6)" in done.stdout  # where the read was invoked


JEPSEN_LOG = """\
2017-01-01 10:00:00,001{GMT}\tINFO\t[main] jepsen.core - Running test
2017-01-01 10:00:00,002{GMT}\tINFO\t[jepsen worker 0] jepsen.util - 0\t:invoke\t:add\t1
2017-01-01 10:00:00,003{GMT}\tINFO\t[jepsen worker 1] jepsen.util - 1\t:invoke\t:add\t2
2017-01-01 10:00:00,004{GMT}\tINFO\t[jepsen worker 0] jepsen.util - 0\t:ok\t:add\t1
2017-01-01 10:00:00,005{GMT}\tINFO\t[jepsen nemesis] jepsen.util - :nemesis\t:info\t:start\tnil
2017-01-01 10:00:00,006{GMT}\tINFO\t[jepsen worker 1] jepsen.util - 1\t:ok\t:add\t2
2017-01-01 10:00:00,007{GMT}\tINFO\t[jepsen worker 2] jepsen.util - 2\t:invoke\t:read\tnil
2017-01-01 10:00:00,008{GMT}\tINFO\t[jepsen worker 2] jepsen.util - 2\t:ok\t:read\t%s
"""


def test_jepsen_log_operation_lines_are_checked_as_a_set(tmp_path: Path) -> None:
    good, bad = tmp_path / "good" / "jepsen.log", tmp_path / "bad" / "jepsen.log"
    for path, read in ((good, "#{1 2}"), (bad, "#{1}")):
        path.parent.mkdir()
        path.write_text(JEPSEN_LOG % read)
    assert check("--model", "set", good).returncode == 0
    done = check("--model", "set", bad)
    assert done.returncode == 1
    assert "1 acknowledged add(s) lost: 2" in done.stdout


def test_an_unreadable_history_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    lines = STALE_JSONL.splitlines()
    lines[2] = lines[2].replace('"type": "invoke"', '"type": "started"')
    history.write_text("\n".join(lines) + "\n")
    done = check("--model", "register", history)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"phalanx check: {history}:3: key 'type' is 'started', not one of invoke, ok, fail, info"
    )
    missing = tmp_path / "missing.edn"
    assert check("--model", "register", missing).returncode == 2


def test_a_counter_history_out_of_its_bounds_exits_1(tmp_path: Path) -> None:
    history = tmp_path / "counter.jsonl"
    history.write_text(
        '{"process": "a", "type": "invoke", "f": "incr", "value": 2}\n'
        '{"process": "a", "type": "ok", "f": "incr", "value": 2}\n'
        '{"process": "b", "type": "invoke", "f": "read", "value": null}\n'
        '{"process": "b", "type": "ok", "f": "read", "value": 5}\n'
    )
    done = check("--model", "counter", history)
    assert done.returncode == 1
    assert "read 5 by b, but the counter was between 2 and 2" in done.stdout


def test_histories_of_several_hosts_are_checked_as_one_with_merge(tmp_path: Path) -> None:
    lines = STALE_JSONL.splitlines()
    first, second = tmp_path / "h1.jsonl", tmp_path / "h2.jsonl"
    first.write_text("\n".join(line for line in lines if '"h1/' in line) + "\n")
    second.write_text("\n".join(line for line in lines if '"h1/' not in line) + "\n")
    # Apart, each host's history is fine; together, h1 read a value h2 had overwritten.
    assert check("--model", "register", first, second).returncode == 0
    done = check("--model", "register", "--merge", first, second)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == f"{first} + {second}: history not linearizable on key x"


def test_the_window_is_drawn_as_a_per_client_timeline_with_html(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    history, page = tmp_path / "history.jsonl", tmp_path / "window.html"
    history.write_text(STALE_JSONL)
    assert check("--model", "register", "--html", page, history).returncode == 1
    html = page.read_text()
    svg = html[html.index("<svg") : html.index("</svg>") + len("</svg>")]
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    rows = [t.text for t in root.iter(f"{ns}text") if t.get("x") == "4"]
    assert rows == ["h2/c0", "h1/c0"]  # one row per client, in order of their first call
    bars = [(float(r.get("x", 0)), r.find(f"{ns}title").text) for r in root.iter(f"{ns}rect")]
    assert [title.split(" (")[0] for _, title in bars] == ["write 2", "read → 1"]
    assert bars[0][0] < bars[1][0]  # the write starts left of the read

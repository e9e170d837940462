"""A VM's files on their way back from a hypervisor daemon: what travels
is bounded and said to be cut; what arrives is placed only for the
cluster's hosts and under the known names."""

from __future__ import annotations

import json
from pathlib import Path

from phalanx.providers import vmfiles


def test_a_long_console_travels_as_its_tail_and_says_where_the_rest_is(tmp_path: Path) -> None:
    folder = tmp_path / "hosts" / "vm1.t.test"
    folder.mkdir(parents=True)
    (folder / "vm.json").write_text(json.dumps({"accel": "tcg"}))
    lines = [f"line {i}" for i in range(100_000)]
    (folder / "console.log").write_text("\n".join(lines) + "\n")
    got = vmfiles.gather(tmp_path / "hosts", ["vm1.t.test", "vm2.t.test"], budget=64 * 1024)
    assert list(got) == ["vm1.t.test"]  # vm2 left nothing
    kept = got["vm1.t.test"]
    assert json.loads(kept["vm.json"]) == {"accel": "tcg"}
    head, _, rest = kept["console.log"].partition("\n")
    assert head.startswith("[") and f"in {folder / 'console.log'} on the hypervisor]" in head
    assert rest.endswith("line 99999\n")
    assert rest.split("\n")[0] in lines  # from a whole line on
    assert len(kept["console.log"].encode()) <= 32 * 1024 + len(head) + 1


def test_only_the_clusters_hosts_and_known_files_are_placed(tmp_path: Path) -> None:
    sent = {
        "vm1.t.test": {"console.log": "booted\n", "../../evil": "x", "vm.json": "{}"},
        "../outside": {"console.log": "x"},
        "other.t.test": {"console.log": "x"},
        "vm2.t.test": "not a mapping",
    }
    placed = vmfiles.place(sent, tmp_path / "hosts", ["vm1.t.test", "vm2.t.test"], "hv1")
    assert placed == ["vm1.t.test"]
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["hosts/vm1.t.test/console.log", "hosts/vm1.t.test/vm.json"]
    assert vmfiles.place(["not", "a", "mapping"], tmp_path / "hosts", ["vm1.t.test"], "hv1") == []

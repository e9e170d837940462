"""What a run keeps of its VMs in its results: each VM's boot timings, accel,
RAM, QMP events and migrations in results.json and on the Run page; and a VM
that boots but whose agent never connects makes the run `error` with its
last console lines. The real runs boot the tiny image under TCG (or KVM)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from phalanx.coordinator.runs import RunOptions, run_local
from phalanx.model import Case, Cluster, Host, RunResult, Script, Status, Suite
from phalanx.providers import qemu as qemu_module
from phalanx.providers.base import AgentSpec
from phalanx.report.html import render_run
from phalanx.report.json import read_json, to_json
from tests.coordinator.runhelpers import output
from tests.processes import alive
from tests.report.test_html import parse, section
from tests.vms import BOOT, needs_qemu

VM = "solo.vmresults.test"


def _vm_folder(run_dir: Path, host: str, record: dict[str, object], events: list[str]) -> None:
    folder = run_dir / "hosts" / host
    folder.mkdir(parents=True)
    (folder / "vm.json").write_text(json.dumps(record))
    (folder / "console.log").write_text("booted\n")
    lines = [json.dumps({"time": i, "event": e, "data": {}}) for i, e in enumerate(events)]
    (folder / "qmp-events.jsonl").write_text("\n".join(lines) + "\n{cut sho")


def test_results_json_carries_each_vms_record_files_and_event_counts(tmp_path: Path) -> None:
    record = {
        "accel": "tcg",
        "ram_mb": 256,
        "boot_to_agent_s": 4.25,
        "boot_to_connected_s": 5.5,
        "migrations": [{"seconds": 0.61, "mode": "tcp", "downtime_ms": 12}],
        "ended_by": "itself",
    }
    _vm_folder(tmp_path, "vm0", record, ["RESUME", "POWERDOWN", "SHUTDOWN", "RESUME"])
    (tmp_path / "hosts" / "plain").mkdir()  # not a VM: no vm.json
    result = RunResult(run_id="r1", suite="s", status=Status.PASSED, hosts=["vm0", "plain"])

    report = to_json(result, tmp_path)

    assert report["vms"] == {
        "vm0": {
            **record,
            "console": "hosts/vm0/console.log",
            "qmp_events": {
                "path": "hosts/vm0/qmp-events.jsonl",
                "counts": {"RESUME": 2, "POWERDOWN": 1, "SHUTDOWN": 1},
            },
        }
    }
    assert to_json(result)["vms"] == {}  # no run folder: nothing to read
    # Read back, it is the run's result again (the folder has the facts).
    path = tmp_path / "results.json"
    path.write_text(json.dumps(report))
    assert read_json(path) == result
    # The Run page shows them in a section of their own, files linked.
    page = parse(render_run(report))
    machines = section(page, "vms")
    text = " ".join(machines.all_text().split())
    for fact in ("vm0", "TCG", "256 MiB", "4.2 s", "5.5 s", "1 (0.6 s)", "itself", "RESUME 2"):
        assert fact in text, fact
    links = {a.attrs["href"] for a in machines.iter("a")}
    assert links == {"hosts/vm0/console.log", "hosts/vm0/qmp-events.jsonl"}
    assert not parse(render_run(to_json(result))).find("section", id="vms")


def _suite(script: str, vcpus: int | None = None) -> Suite:
    host = Host(name=VM, ram_size="256M", vcpus=vcpus)
    return Suite(
        name="vmresults",
        cluster=Cluster(name="vmresults", hosts=(host,), provider="qemu"),
        cases=(Case(name="hello", stages={"run": Script(text=script)}),),
        timeout=BOOT,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An image cache of this module's own (the image and the KVM probe),
    as test_qemu has: independent of which module runs first."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root))
        yield root


def _run_id(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:8]}"


@needs_qemu
@pytest.mark.timeout(BOOT + 120)
async def test_a_vm_runs_boot_timings_and_qmp_events_are_in_results_json(
    tmp_path: Path, cache: Path
) -> None:
    """One VM with two vCPUs, one stage: the guest has them, and
    results.json says how the VM was run (accel, RAM, vCPUs),
    how long it took from QEMU's start to its agent's start and to its
    connection, and counts the QMP events its file holds; report.html
    shows it."""
    options = RunOptions(results=tmp_path / "results", connect_timeout=BOOT, run_id=_run_id("vmr"))
    result, folder = await run_local(_suite("hostname -f; nproc", vcpus=2), options)

    assert result.status is Status.PASSED, result.reason
    assert output(folder, result, "hello", "run", VM).split() == [VM, "2"]
    report = json.loads((folder / "results.json").read_text())
    vm = report["vms"][VM]
    assert vm["accel"] in ("kvm", "tcg")
    assert vm["ram_mb"] == 256
    assert vm["vcpus"] == 2
    assert 0 < vm["boot_to_agent_s"] <= vm["boot_to_connected_s"]
    assert vm["ended_by"] in ("itself", "acpi", "quit")
    assert vm["console"] == f"hosts/{VM}/console.log"
    assert "phalanx-vm: starting the agent" in (folder / vm["console"]).read_text(errors="replace")
    events = vm["qmp_events"]
    assert events["path"] == f"hosts/{VM}/qmp-events.jsonl"
    written = [json.loads(line)["event"] for line in (folder / events["path"]).open()]
    assert events["counts"] == {name: written.count(name) for name in dict.fromkeys(written)}
    assert "SHUTDOWN" in events["counts"]  # the guest powered itself off
    machines = section(parse((folder / "report.html").read_text()), "vms")
    assert VM in machines.all_text()
    assert not alive(int((folder / "hosts" / VM / "qemu.pid").read_text()))


@needs_qemu
@pytest.mark.timeout(BOOT + 120)
async def test_a_vm_whose_agent_never_connects_is_an_error_with_its_console_lines(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guest boots and starts its agent, but with a token the
    coordinator refuses: the agent says so on the console and exits, and
    the run is `error` within the connect timeout, its reason carrying
    those console lines."""
    up = qemu_module.QemuProvider.up

    async def wrong_token(self: qemu_module.QemuProvider, specs: list[AgentSpec]) -> None:
        await up(self, [replace(spec, token="not-the-token") for spec in specs])

    monkeypatch.setattr(qemu_module.QemuProvider, "up", wrong_token)
    options = RunOptions(results=tmp_path / "results", connect_timeout=20, run_id=_run_id("vmx"))
    result, folder = await run_local(_suite("true"), options)

    assert result.status is Status.ERROR
    reason = result.reason or ""
    first, explained = reason.split("\n", 1)
    assert first == f"agents did not connect within 20s: {VM}"
    assert explained.startswith(f"the VM of {VM} started its agent, which did not connect")
    assert "its console's last lines:" in explained
    assert "the coordinator refused this agent (HTTP 403)" in explained
    case = result.case("hello")
    assert case is not None and case.status is not Status.PASSED
    record = json.loads((folder / "hosts" / VM / "vm.json").read_text())
    assert record["boot_to_agent_s"] > 0 and record["boot_to_connected_s"] is None
    assert not alive(int((folder / "hosts" / VM / "qemu.pid").read_text()))

"""Link conditions and `phalanx-net slow` on netns hosts, on a real netem.

This machine's kernel may have no `sch_netem`; the VMs phalanx boots run
Debian's kernel, whose modules have it. So one VM (the tiny image: this
machine's userland over 9p, this very phalanx and Python) runs `phalanx run
--provider netns` inside itself, on two netns hosts: `far` with `link:
{delay, jitter, loss}`, measured by pings from `near` (round trips, how many
came back), then slowed by `phalanx-net slow` and healed. What the inner run
said comes back as the VM's stage output. The same boot carries two cases
whose nemesis pauses and kills a process of theirs inside the guest (the
VM's agent signals it, as on local, netns and container hosts)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import textwrap
import uuid
from pathlib import Path

import pytest

from phalanx.coordinator.runs import RunOptions, run_local
from phalanx.model import Case, Cluster, Host, Nemesis, RunResult, Script, Status, Suite
from phalanx.providers import netns, qemu
from phalanx.providers.vmimage import Image, RootDisk
from tests.coordinator.runhelpers import output
from tests.history.test_case_nemesis import KILLED, PAUSED, STATE, TICKER
from tests.vms import BOOT, qemu_missing, with_images

MISSING = qemu_missing()
ROOT = not netns.lacking_capabilities("CAP_NET_ADMIN") and shutil.which("ip") is not None
pytestmark = pytest.mark.skipif(
    MISSING is not None or not ROOT,
    reason=MISSING or "netns hosts inside the VM need root here too (the VM's agent is root)",
)

# Inside the VM: far's link is 100 ms ± 40 ms and loses 30% both ways, so a
# round trip takes 120..280 ms (uniform jitter) and about half the pings
# come back.
CLUSTER = """\
name: n
hosts:
  - {name: far.netem.test, link: {delay: 100ms, jitter: 40ms, loss: 30%}}
  - {name: near.netem.test}
"""
PINGS = 40
PING = f"busybox ping -c {PINGS} -i 0.2 -W 5 far.netem.test || true"
SHOW = "tc qdisc show dev eth0 | grep netem || echo 'no netem'"


def _on_near(near: str, far: str = "true") -> str:
    return f'if [ "$(hostname -s)" = near ]; then\n{near}\nelse\n{far}\nfi\n'


STAGES = {
    "link": _on_near(PING),
    # far's own side becomes a 300 ms delay (no loss); its bridge side keeps
    # the link's 100 ms ± 40 ms and 30%.
    "slow": _on_near("phalanx-net slow far 300ms && echo slowed")
    + "phalanx-sync slowed\n"
    + _on_near(PING, SHOW),
    "healed": _on_near(PING, SHOW),
}

# The VM's stage: the inner run, then what it said, as one JSON line.
OUTER = """\
cd "$(mktemp -d)"
code=0
# Bounded below the suite's stage timeout: a run that hangs in the guest
# still says what it printed (once in CI the stage printed nothing in 480 s).
timeout -k 10 400 phalanx run {repo} -s s --provider netns --plain --results results \\
    --connect-timeout 300 --heartbeat-timeout 60 > said.txt 2>&1 || code=$?
echo "inner exit $code"
"$PHALANX_PYTHON" - <<'PY'
import json, pathlib
said = {{"run": pathlib.Path("said.txt").read_text()[-4000:], "logs": {{}}}}
for log in pathlib.Path("results").glob("*/cases/*/run/*.log"):
    said["logs"].setdefault(log.parent.parent.name, {{}})[log.stem] = log.read_text()
print("inner " + json.dumps(said))
PY
"""


def _repo(root: Path) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "n.yaml").write_text(CLUSTER)
    suite = root / "test-suites" / "s"
    suite.mkdir(parents=True)
    (suite / "suite.yaml").write_text(f"name: s\ncluster: n\ntests: [{', '.join(STAGES)}]\n")
    for case, text in STAGES.items():
        (suite / "tc" / case).mkdir(parents=True)
        (suite / "tc" / case / "run.sh").write_text("#!/bin/bash\n" + textwrap.dedent(text))
    return root


def _pings(text: str) -> tuple[list[float], int]:
    """The round trips (ms) of a ping's output, and how many came back."""
    rtts = [float(t) for t in re.findall(r"time=([\d.]+) ms", text)]
    received = re.search(r"(\d+) packets transmitted, (\d+) packets received", text)
    assert received is not None and int(received[1]) == PINGS, text
    assert int(received[2]) == len(rtts), text
    return rtts, len(rtts)


VM = Host(name="netem.vm.test", ram_size="1024M", vcpus=2)
NEMESIS_STAGES = {"initialize": TICKER, "finalize": STATE}


@pytest.fixture(scope="module")
def vm_run(
    tmp_path_factory: pytest.TempPathFactory, vm_images: tuple[Image, RootDisk]
) -> tuple[RunResult, Path]:
    """One VM boot for the module: its `netns` case runs the inner netns
    run; `pausing` and `killing` have a case nemesis that pauses and kills
    a process of theirs inside the guest."""
    root = tmp_path_factory.mktemp("netem")
    repo = _repo(root / "repo")

    def nemesis_case(name: str, run: str, fault: str) -> Case:
        stages = {stage: Script(text=text) for stage, text in NEMESIS_STAGES.items()}
        return Case(
            name=name,
            stages={**stages, "run": Script(text=run)},
            nemesis=Nemesis(every=0.5, faults=(fault,), seed=7),
        )

    suite = Suite(
        name="netem",
        cluster=Cluster(name="netem", hosts=(VM,), provider="qemu"),
        cases=(
            Case(name="netns", stages={"run": Script(text=OUTER.format(repo=repo))}),
            nemesis_case("pausing", PAUSED, "pause ticker"),
            nemesis_case("killing", KILLED, "kill ticker"),
        ),
        timeout=480,
    )
    options = RunOptions(
        results=root / "results",
        heartbeat_timeout=30,
        connect_timeout=BOOT,
        run_id=f"vm-netem-{uuid.uuid4().hex[:8]}",
    )
    with pytest.MonkeyPatch.context() as patch:
        with_images(patch, vm_images)
        # Two vCPUs under TCG beside the suite's other VMs: once in CI this
        # boot printed nothing within the provider's 180 s; give it the
        # module's whole bound instead.
        patch.setitem(qemu.BOOT_TIMEOUT, "tcg", 2.0 * BOOT)
        return asyncio.run(run_local(suite, options))


@pytest.mark.timeout(BOOT + 600)
def test_link_conditions_and_slow_on_netns_hosts_are_measured_on_a_real_netem(
    vm_run: tuple[RunResult, Path],
) -> None:
    result, folder = vm_run
    said = output(folder, result, "netns", "run", VM.name)
    (line,) = [line for line in said.splitlines() if line.startswith("inner {")]
    inner = json.loads(line.removeprefix("inner "))
    assert "inner exit 0\n" in said, inner["run"]
    netns_case = result.case("netns")
    assert netns_case is not None and netns_case.status is Status.PASSED, said
    logs = inner["logs"]

    # The link: no round trip under twice 100 - 40 ms, some under twice 100
    # (jitter spreads them), and some pings lost, most not all.
    rtts, received = _pings(logs["link"]["near.netem.test"])
    assert min(rtts) >= 120, rtts
    assert any(rtt < 200 for rtt in rtts), rtts
    assert 4 <= received <= PINGS - 4, received

    # Slowed: far's answers wait 300 ms more; its own side is plain netem.
    slowed = logs["slow"]["near.netem.test"]
    assert slowed.startswith("slowed\n"), slowed
    rtts, received = _pings(slowed)
    assert received > 0 and min(rtts) >= 60 + 300, rtts
    shown = logs["slow"]["far.netem.test"].strip()
    assert re.fullmatch(r"qdisc netem \S+ root .* delay 300ms", shown), shown

    # Healed when the case ended: the link's conditions are back as they were.
    rtts, received = _pings(logs["healed"]["near.netem.test"])
    assert min(rtts) >= 120 and min(rtts) < 300, rtts
    shown = logs["healed"]["far.netem.test"].strip()
    assert re.fullmatch(r"qdisc netem 1: root .* delay 100ms +40ms loss 30%", shown), shown


@pytest.mark.timeout(BOOT + 600)
def test_pause_and_kill_nemesis_reach_a_cases_process_inside_a_vm(
    vm_run: tuple[RunResult, Path],
) -> None:
    result, folder = vm_run
    for name, fault, done, after in (
        ("pausing", "pause", "ticker paused", "SR"),
        ("killing", "kill", "ticker killed", "g"),
    ):
        case = result.case(name)
        assert case is not None and case.status is Status.PASSED, case
        assert output(folder, result, name, "run", VM.name).strip() == done
        state = output(folder, result, name, "finalize", VM.name).split("ticker state: ")[1]
        assert state[0] in after, state  # resumed after a pause; gone after a kill
        assert case.history is not None
        faults = [(e.f, str(e.value)) for e in case.history.events if e.process == "nemesis"]
        assert faults[0][0] == "start", faults
        assert faults[0][1].startswith(f"{fault} ticker on {VM.name} (pid "), faults

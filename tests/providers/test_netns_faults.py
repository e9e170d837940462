"""Network faults end to end: `phalanx run --provider netns` on a cluster
that names no provider, a stage that cuts a host off with `phalanx-net`
and then fails, and the next case finding the network whole again (healed
when the failed case ended). Real namespaces, real TCP connects; skipped,
saying why, without root or `ip netns`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.providers.test_netns import _logs, _made_by, _phalanx, _repo, needs_netns

pytestmark = [
    needs_netns,
    pytest.mark.skipif(
        shutil.which("iptables-nft-restore") is None and shutil.which("iptables-restore") is None,
        reason="needs iptables (apt-get install iptables)",
    ),
]

CLUSTER = """\
name: c
hosts:
  - {name: a.flt.test}
  - {name: b.flt.test}
  - {name: c.flt.test}
"""

# Every host listens on its own address until its case ends.
LISTEN = """\
#!/bin/bash
python3 -c '
import socket
server = socket.create_server(("@address@", 9300))
while True:
    server.accept()[0].close()
' &
for _ in $(seq 100); do
    python3 -c 'import socket; socket.create_connection(("@address@", 9300), 1)' 2>/dev/null && exit 0
    sleep 0.1
done
exit 1
"""

# What a connect from this host to each host gives: ok, timeout or the error.
REACH = """\
python3 - a.flt.test b.flt.test c.flt.test <<'PY'
import socket, sys
for name in sys.argv[1:]:
    try:
        socket.create_connection((name, 9300), timeout=2).close()
        print(name, "ok")
    except TimeoutError:
        print(name, "timeout")
    except OSError as exc:
        print(name, type(exc).__name__)
PY
"""

CUT = f"""\
#!/bin/bash
set -e
if [ "$(hostname -s)" = a ]; then
    phalanx-net isolate b          # by short name
fi
phalanx-sync cut
{REACH}
if [ "$(hostname -s)" = a ]; then
    phalanx-net slow c 100ms && echo "slowed c" || echo "slow refused"
fi
exit 1                             # the case fails with b still cut off
"""

WHOLE = f"""\
#!/bin/bash
set -e
{REACH}
"""

LOCAL_ONLY = """\
#!/bin/bash
phalanx-net heal
"""


def test_a_cut_holds_in_its_case_and_is_healed_when_the_case_fails(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path / "repo",
        CLUSTER,
        {"cut": {"init.sh": LISTEN, "run.sh": CUT}, "whole": {"init.sh": LISTEN, "run.sh": WHOLE}},
    )
    done = _phalanx("run", str(repo), "-s", "s", "--provider", "netns", "--plain", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # the cut case failed
    (run,) = (tmp_path / "phalanx-results").iterdir()

    cut = _logs(run, "cut")
    assert "b.flt.test timeout" in cut["a.flt.test"] and "c.flt.test ok" in cut["a.flt.test"]
    assert "a.flt.test timeout" in cut["b.flt.test"] and "c.flt.test timeout" in cut["b.flt.test"]
    assert "a.flt.test ok" in cut["c.flt.test"] and "b.flt.test timeout" in cut["c.flt.test"]

    # Without sch_netem, slow says why; with it, c is slowed until the case ends.
    if "slow refused" in cut["a.flt.test"]:
        assert (
            "phalanx-net: cannot slow c.flt.test: this kernel has no netem qdisc"
            in (cut["a.flt.test"])
        )
    else:
        assert "slowed c" in cut["a.flt.test"]

    # The next case: every host reaches every host again.
    whole = _logs(run, "whole")
    for host, text in whole.items():
        assert text.count(" ok") == 3, (host, text)
    assert "whole" in done.stdout and _made_by(run.name) == []


def test_on_local_hosts_phalanx_net_says_why_not(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", CLUSTER, {"heal": {"run.sh": LOCAL_ONLY}})
    done = _phalanx("run", str(repo), "-s", "s", "--provider", "local", "--plain", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = (tmp_path / "phalanx-results").iterdir()
    said = _logs(run, "heal")["a.flt.test"]
    assert (
        "phalanx-net: network faults need hosts with a network of their own (provider: netns or qemu); "
        "this run's hosts are local"
    ) in said

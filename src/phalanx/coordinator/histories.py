"""A run's operation histories as the coordinator gathers them: the records
each host's stages send (`history.ops`), kept per case, and the nemesis's
faults; at the case's end, one history on the coordinator's clock, with the
offset of each host's clock as measured (coordinator/clock.py)."""

from __future__ import annotations

from collections.abc import Mapping

from phalanx import layout
from phalanx.coordinator.clock import ClockOffset
from phalanx.model import CaseHistory, HistoryEvent, HostClock
from phalanx.wire.messages import OpRecord

NEMESIS = "nemesis"


class Histories:
    def __init__(self) -> None:
        # case → (host, record on its host's clock) in the order they came
        self.records: dict[str, list[tuple[str, OpRecord]]] = {}
        # case → the batches it holds: an agent resends a batch after a
        # reconnect until its stage's result is acked (at least once), so
        # each is kept once; a case already taken takes no more.
        self.batches: dict[str, set[str]] = {}
        self.taken: set[str] = set()
        # case → the nemesis's events, already on the coordinator's clock
        self.faults: dict[str, list[HistoryEvent]] = {}
        self.nemesis_errors: dict[str, str] = {}

    def add(self, case: str, host: str, batch: str, records: list[OpRecord]) -> None:
        seen = self.batches.setdefault(case, set())
        if case in self.taken or batch in seen:
            return
        seen.add(batch)
        self.records.setdefault(case, []).extend((host, r) for r in records)

    def fault(self, case: str, f: str, what: str, at: float) -> None:
        """A nemesis's step (`start`, `heal`), as Jepsen records its nemesis:
        an `info` event of the process `nemesis` (the checkers leave it out)."""
        event = HistoryEvent(process=NEMESIS, type="info", f=f, value=what, time=at)
        self.faults.setdefault(case, []).append(event)

    def nemesis_failed(self, case: str, why: str) -> None:
        self.nemesis_errors.setdefault(case, why)

    def take(self, case: str, clocks: Mapping[str, ClockOffset]) -> CaseHistory | None:
        """The case's history (None: nothing was recorded), its records
        moved onto the coordinator's clock; forgotten here."""
        records = self.records.pop(case, [])
        self.batches.pop(case, None)
        self.taken.add(case)
        faults = self.faults.pop(case, [])
        error = self.nemesis_errors.pop(case, None)
        if not records and not faults and error is None:
            return None
        hosts = sorted({host for host, _ in records})
        measured = {host: host_clock(host, clocks.get(host)) for host in hosts}
        events = [
            HistoryEvent(
                process=r.process,
                type=r.type,
                f=r.f,
                key=r.key,
                value=r.value,
                time=r.time - measured[host].offset,
                host=host,
            )
            for host, r in records
        ]
        # Stable: one client's records keep their order if two share a time.
        events = sorted([*events, *faults], key=lambda e: e.time)
        return CaseHistory(
            events=tuple(events),
            clocks=tuple(measured[h] for h in hosts),
            file=layout.history_path(case),
            nemesis_error=error,
        )


def host_clock(host: str, clock: ClockOffset | None) -> HostClock:
    best = clock.best() if clock is not None else None
    if best is None:
        return HostClock(host=host)
    return HostClock(
        host=host,
        offset=round(best.offset, 6),
        rtt=round(best.rtt, 6),
        samples=clock.count if clock is not None else 0,
    )

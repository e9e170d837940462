"""In-stage coordination: barriers (`phalanx-sync`) and key/values
(`phalanx-send`, `phalanx-wait`). Pure state: callers say what happened and
get back who to answer; sending the answers is theirs.

A barrier NAME releases when every host of the stage has arrived at it, or
has finished its stage (a host that ended cannot arrive, and must not hold
the others). A host's k-th arrival at NAME meets the others' k-th arrival, so
a loop may sync on the same name each time round.

One `Rendezvous` serves one run: kv scopes name a case of the suite, not of a
run, so runs sharing one would read one another's values. Within a run, what
a stage holds (arrivals, waiters, answers kept for resends) goes when the
stage ends; only the values stay, for the later stages of their case.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    host: str
    request_id: str
    key: str | None = None  # None: a barrier release
    value: str = ""


@dataclass
class _Stage:
    hosts: frozenset[str]
    kv_scope: str
    done: set[str] = field(default_factory=set)
    # name -> generation -> host -> request id
    arrivals: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    released: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # request id -> answer: a request resent after a reconnect gets it again
    answered: dict[str, Answer] = field(default_factory=dict)


@dataclass(frozen=True)
class _Waiter:
    stage_id: str
    host: str
    request_id: str


class Rendezvous:
    def __init__(self) -> None:
        self._stages: dict[str, _Stage] = {}
        self._values: dict[str, dict[str, str]] = {}  # kv scope -> key -> value
        self._waiting: dict[str, dict[str, list[_Waiter]]] = {}  # kv scope -> key -> waiters

    def begin_stage(self, stage_id: str, hosts: frozenset[str], kv_scope: str) -> None:
        self._stages[stage_id] = _Stage(hosts, kv_scope)

    def end_stage(self, stage_id: str) -> None:
        stage = self._stages.pop(stage_id, None)
        if stage is None:
            return
        # Its waiters have ended with it: a later send must not answer them.
        keys = self._waiting.get(stage.kv_scope, {})
        for key in list(keys):
            keys[key] = [w for w in keys[key] if w.stage_id != stage_id]
            if not keys[key]:
                del keys[key]
        if not keys:
            self._waiting.pop(stage.kv_scope, None)

    def held(self) -> tuple[int, int]:
        """How many stages and waiting requests it holds (both 0 between stages)."""
        return len(self._stages), sum(
            len(waiters) for keys in self._waiting.values() for waiters in keys.values()
        )

    def host_done(self, stage_id: str, host: str) -> list[Answer]:
        stage = self._stages.get(stage_id)
        if stage is None:
            return []
        stage.done.add(host)
        answers: list[Answer] = []
        for name in list(stage.arrivals):
            answers += self._release_ready(stage, name)
        return answers

    def arrive(self, stage_id: str, host: str, name: str, request_id: str) -> list[Answer]:
        stage = self._stages.get(stage_id)
        if stage is None:
            return []
        if request_id in stage.answered:  # a resend after a reconnect
            return [stage.answered[request_id]]
        generations = stage.arrivals[name]
        if any(request_id in g.values() for g in generations):
            return []
        for generation in generations:
            if host not in generation:
                generation[host] = request_id
                break
        else:
            generations.append({host: request_id})
        return self._release_ready(stage, name)

    def _release_ready(self, stage: _Stage, name: str) -> list[Answer]:
        answers: list[Answer] = []
        generations = stage.arrivals[name]
        while stage.released[name] < len(generations):
            generation = generations[stage.released[name]]
            missing = stage.hosts - generation.keys() - stage.done
            if missing:
                break
            stage.released[name] += 1
            for host, rid in generation.items():
                answer = Answer(host, rid)
                stage.answered[rid] = answer
                answers.append(answer)
        return answers

    def send(self, stage_id: str, key: str, value: str) -> list[Answer]:
        stage = self._stages.get(stage_id)
        if stage is None:
            return []
        scope = stage.kv_scope
        self._values.setdefault(scope, {})[key] = value
        keys = self._waiting.get(scope, {})
        answers: list[Answer] = []
        for waiter in keys.pop(key, []):
            answer = Answer(waiter.host, waiter.request_id, key, value)
            if (waiting_stage := self._stages.get(waiter.stage_id)) is not None:
                waiting_stage.answered[waiter.request_id] = answer
            answers.append(answer)
        if not keys:
            self._waiting.pop(scope, None)
        return answers

    def wait(self, stage_id: str, host: str, key: str, request_id: str) -> list[Answer]:
        stage = self._stages.get(stage_id)
        if stage is None:
            return []
        if request_id in stage.answered:
            return [stage.answered[request_id]]
        scope = stage.kv_scope
        values = self._values.get(scope, {})
        if key in values:
            answer = Answer(host, request_id, key, values[key])
            stage.answered[request_id] = answer
            return [answer]
        waiter = _Waiter(stage_id, host, request_id)
        waiting = self._waiting.setdefault(scope, {}).setdefault(key, [])
        if waiter not in waiting:
            waiting.append(waiter)
        return []

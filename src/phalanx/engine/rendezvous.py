"""In-stage coordination: barriers (`phalanx-sync`) and key/values
(`phalanx-send`, `phalanx-wait`). Pure state: callers say what happened and
get back who to answer; sending the answers is theirs.

A barrier NAME releases when every host of the stage has arrived at it, or
has finished its stage (a host that ended cannot arrive, and must not hold
the others). A host's k-th arrival at NAME meets the others' k-th arrival, so
a loop may sync on the same name each time round.
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


class Rendezvous:
    def __init__(self) -> None:
        self._stages: dict[str, _Stage] = {}
        self._values: dict[str, dict[str, str]] = defaultdict(dict)  # kv scope -> key -> value
        self._waiting: dict[str, dict[str, list[tuple[str, str]]]] = defaultdict(
            lambda: defaultdict(list)
        )  # kv scope -> key -> [(host, request id)]
        self._answered: dict[str, Answer] = {}  # request id -> answer, for resends

    def begin_stage(self, stage_id: str, hosts: frozenset[str], kv_scope: str) -> None:
        self._stages[stage_id] = _Stage(hosts, kv_scope)

    def end_stage(self, stage_id: str) -> None:
        self._stages.pop(stage_id, None)

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
        if request_id in self._answered:  # a resend after a reconnect
            return [self._answered[request_id]]
        stage = self._stages.get(stage_id)
        if stage is None:
            return []
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
                self._answered[rid] = answer
                answers.append(answer)
        return answers

    def send(self, stage_id: str, key: str, value: str) -> list[Answer]:
        stage = self._stages.get(stage_id)
        if stage is None:
            return []
        scope = stage.kv_scope
        self._values[scope][key] = value
        answers = [Answer(h, rid, key, value) for h, rid in self._waiting[scope].pop(key, [])]
        for answer in answers:
            self._answered[answer.request_id] = answer
        return answers

    def wait(self, stage_id: str, host: str, key: str, request_id: str) -> list[Answer]:
        if request_id in self._answered:
            return [self._answered[request_id]]
        stage = self._stages.get(stage_id)
        if stage is None:
            return []
        scope = stage.kv_scope
        if key in self._values[scope]:
            answer = Answer(host, request_id, key, self._values[scope][key])
            self._answered[request_id] = answer
            return [answer]
        waiting = self._waiting[scope][key]
        if (host, request_id) not in waiting:
            waiting.append((host, request_id))
        return []

"""Which cases run, how often and in what order, for test trees and suites
alike. Pure: cases in, cases out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from phalanx.model import Case


class SelectionError(ValueError):
    pass


@dataclass(frozen=True)
class Selection:
    tests: tuple[str, ...] = ()  # -t: a test or a folder of tests, path or dotted
    regexes: tuple[str, ...] = ()  # --test-regex: one must be found in `name/`
    tags: tuple[str, ...] = ()  # -g: a test must have one of them (runtests.py)
    exclude_tags: tuple[str, ...] = ()  # -G: a test must have none
    skip_regexes: tuple[str, ...] = ()  # -T: none may be found in `name/`
    keywords: str | None = None  # -k: a pytest keyword expression (phalanx.keywords)


def _forms(selector: str, prefix: str) -> list[str]:
    """The names a `-t` may mean: as given, under the tree's folder, and the
    dotted form (`pbx.dialplan` for `tests/pbx/dialplan`)."""
    given = selector.strip().strip("/")
    if given.startswith("./"):
        given = given[2:]
    forms = [given]
    if "/" not in given and "." in given:
        forms.append(given.replace(".", "/"))
    forms += [f"{prefix}/{f}" for f in list(forms) if not f.startswith(f"{prefix}/")]
    return forms


def _under(name: str, form: str) -> bool:
    return name == form or name.startswith(form + "/")


def select(cases: Sequence[Case], selection: Selection, prefix: str) -> list[Case]:
    """The cases `selection` picks, in the order given. A `-t` that matches no test
    is an error (a typo must not pass as an empty green run)."""
    picked = list(cases)
    if selection.tests:
        chosen: set[str] = set()
        for selector in selection.tests:
            forms = _forms(selector, prefix)
            matched = [c.name for c in cases if any(_under(c.name, f) for f in forms)]
            if not matched:
                raise SelectionError(f"-t {selector}: no test is named so or lives under it")
            chosen.update(matched)
        picked = [c for c in picked if c.name in chosen]
    # As runtests.py: searched in the name with a trailing slash, so that
    # `foo/` matches a test `foo` and not `foobar`.
    if selection.regexes:
        wanted = _patterns(selection.regexes, "--test-regex")
        picked = [c for c in picked if any(p.search(c.name + "/") for p in wanted)]
    if selection.skip_regexes:
        unwanted = _patterns(selection.skip_regexes, "-T/--skip-test-regex")
        picked = [c for c in picked if not any(p.search(c.name + "/") for p in unwanted)]
    if selection.tags:
        picked = [c for c in picked if set(selection.tags) & set(c.tags)]
    if selection.exclude_tags:
        picked = [c for c in picked if not set(selection.exclude_tags) & set(c.tags)]
    if selection.keywords is not None:
        from phalanx.keywords import KeywordError, matches, parse  # -k only: its grammar

        try:
            expression = parse(selection.keywords)
        except KeywordError as exc:
            raise SelectionError(str(exc)) from None
        picked = [c for c in picked if matches(expression, c.name, c.tags)]
    return picked


def last_failed(cases: Sequence[Case], failed: frozenset[str]) -> list[Case]:
    """--last-failed: only the cases that did not pass last time. When none
    of them is left (the last run passed), every case, as pytest does."""
    again = [c for c in cases if c.name in failed]
    return again or list(cases)


def failed_first(cases: Sequence[Case], failed: frozenset[str]) -> list[Case]:
    """--failed-first: last time's failures, then the rest, each in its order."""
    return [c for c in cases if c.name in failed] + [c for c in cases if c.name not in failed]


def _patterns(regexes: Sequence[str], option: str) -> list[re.Pattern[str]]:
    patterns = []
    for regex in regexes:
        try:
            patterns.append(re.compile(regex))
        except re.error as exc:
            raise SelectionError(f"{option} {regex!r}: {exc}") from None
    return patterns


def repeat(cases: Sequence[Case], number: int) -> list[Case]:
    """The selection `number` times; repetitions are named `name#i` so every
    run of a test keeps its own result and output."""
    if number < 1:
        raise SelectionError("--number must be at least 1")
    if number == 1:
        return list(cases)
    return [replace(c, name=f"{c.name}#{i}") for i in range(1, number + 1) for c in cases]


def shuffle(cases: Sequence[Case], seed: int) -> list[Case]:
    shuffled = list(cases)
    import random  # only a shuffled run pays for it

    random.Random(seed).shuffle(shuffled)
    return shuffled

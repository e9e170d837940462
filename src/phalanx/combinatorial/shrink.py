"""Reduce a failing walk to a minimal one that fails the same way.

Pure: candidates are judged by an ``evaluate`` callback that runs a batch of
walks (in parallel, wherever the run's executor runs them) and says, for each,
whether it failed the same way. A walk here is a tuple of (action position,
option index) pairs, in walk order.

Minimal means: fewest actions first, then the smallest option indexes. The
search is greedy (drop one action at a time, then lower one option at a time,
and repeat until neither helps), which finds a local minimum: no single action
can be dropped and no single option lowered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Step = tuple[int, int]
Candidate = tuple[Step, ...]
Evaluate = Callable[[Sequence[Candidate]], Sequence[bool]]


def shrink(start: Candidate, evaluate: Evaluate, budget: int = 2000) -> tuple[Candidate, int]:
    """The smallest candidate found, and how many candidates were run."""
    best = start
    tries = 0

    def first_failing(cands: list[Candidate]) -> Candidate | None:
        nonlocal tries
        if not cands or tries >= budget:
            return None
        cands = cands[: budget - tries]
        tries += len(cands)
        for cand, fails in zip(cands, evaluate(cands), strict=True):
            if fails:
                return cand
        return None

    improved = True
    while improved:
        improved = False
        while len(best) > 1:
            shorter = first_failing([best[:i] + best[i + 1 :] for i in range(len(best))])
            if shorter is None:
                break
            best, improved = shorter, True
        for i in range(len(best)):
            pos, option = best[i]
            lower = first_failing([(*best[:i], (pos, o), *best[i + 1 :]) for o in range(option)])
            if lower is not None:
                best, improved = lower, True
    return best, tries

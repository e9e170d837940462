"""The models by name, as `check:` and `phalanx check --model` name them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from phalanx.history import counter, register, sets
from phalanx.history.ops import Op
from phalanx.history.verdict import Verdict

MODELS: dict[str, Callable[[Sequence[Op]], Verdict]] = {
    "register": register.check,
    "set": sets.check,
    "counter": counter.check,
}

"""Operation histories and the checkers that judge them.

A history is what clients did to a system under test: each operation's
invocation and its outcome (`ok`, `fail`: it did not happen, `info`: it may
have happened). The checkers (`register`, `set`, `counter`) are pure: they
take operations and return a verdict, with the smallest window of operations
that cannot be ordered when the history is invalid. Parsing files lives in
`formats`, the `phalanx check` command in `phalanx.check`.

`op` records an operation from a Python test (see `client`); it is the one
name here, imported on first use so that `import phalanx.history` stays free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phalanx.history.client import op

__all__ = ["op"]


def __getattr__(name: str) -> Any:
    if name == "op":
        from phalanx.history.client import op

        return op
    raise AttributeError(name)

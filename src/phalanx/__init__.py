"""phalanx: system tests across a fleet of machines, in lockstep.

Kept free of imports: `phalanx-sync` and the agent import submodules of this
package on every stage, and start-up time is overhead on every barrier.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "fail", "send", "sync", "wait"]


def sync(name: str, timeout: float | None = None) -> None:
    """Inside a stage: wait until every host of the stage reached `name`."""
    _ask({"op": "sync", "name": name}, timeout)


def send(key: str, value: str = "") -> None:
    """Inside a stage: publish `key` (with `value`) to every host of the case."""
    _ask({"op": "send", "key": key, "value": value}, None)


def wait(key: str, timeout: float | None = None) -> str:
    """Inside a stage: block until some host sent `key`; return its value."""
    return str(_ask({"op": "wait", "key": key}, timeout).get("value", ""))


# Set by the python test child (phalanx.host.pychild) to a list it reads
# when the tests are done: (thread, reason) per phalanx.fail call.
_failures: list[tuple[object, str]] | None = None


def fail(reason: str) -> None:
    """Inside a python test: mark the test failed with `reason`, and return
    (the test may still fill final_results). Recorded, not raised, so a test
    that catches its own exceptions cannot swallow it."""
    if _failures is None:
        raise RuntimeError(f"phalanx.fail outside a python test: {reason}")
    import threading

    _failures.append((threading.current_thread(), str(reason)))


def _ask(message: dict[str, str], timeout: float | None) -> dict[str, object]:
    import os

    from phalanx.host.syncclient import request

    seconds = (
        timeout if timeout is not None else float(os.environ.get("PHALANX_STAGE_TIMEOUT", "600"))
    )
    answer = request(dict(message), seconds)
    if not answer.get("ok"):
        raise RuntimeError(f"phalanx {message['op']}: {answer.get('error', 'refused')}")
    return answer

"""phalanx: system tests across a fleet of machines, in lockstep.

Kept free of imports: `phalanx-sync` and the agent import submodules of this
package on every stage, and start-up time is overhead on every barrier.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "send", "sync", "wait"]


def sync(name: str, timeout: float | None = None) -> None:
    """Inside a stage: wait until every host of the stage reached `name`."""
    _ask({"op": "sync", "name": name}, timeout)


def send(key: str, value: str = "") -> None:
    """Inside a stage: publish `key` (with `value`) to every host of the case."""
    _ask({"op": "send", "key": key, "value": value}, None)


def wait(key: str, timeout: float | None = None) -> str:
    """Inside a stage: block until some host sent `key`; return its value."""
    return str(_ask({"op": "wait", "key": key}, timeout).get("value", ""))


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

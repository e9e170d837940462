"""``combtest.utils``: the helpers py-combtest tests import."""

from __future__ import annotations

import importlib
import socket

_my_ip: str | None = None


def get_my_IP() -> str:
    """An address of this host that others could reach (127.0.0.1 without a network)."""
    global _my_ip
    if _my_ip is None:
        try:
            # No packet is sent: connecting a UDP socket only picks the outgoing interface.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect(("192.0.2.1", 9))
                _my_ip = str(s.getsockname()[0])
        except OSError:
            _my_ip = "127.0.0.1"
    return _my_ip


def set_my_IP(ip: str) -> None:
    global _my_ip
    _my_ip = ip


def get_class_qualname(cls: type) -> str:
    """``module.Name``, the dotted form py-combtest writes into its traces."""
    return f"{cls.__module__}.{cls.__qualname__}"


def get_class_from_qualname(name: str) -> type:
    """The class a dotted ``module.Name`` names; ValueError if none does here."""
    tokens = name.split(".")
    for cut in range(len(tokens) - 1, 0, -1):
        module_name = ".".join(tokens[:cut])
        try:
            obj: object = importlib.import_module(module_name)
        except ImportError:
            continue
        except Exception as exc:  # a module that fails while importing
            raise ValueError(f"cannot import {module_name!r} for {name!r}: {exc}") from exc
        try:
            for part in tokens[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            break
        if isinstance(obj, type):
            return obj
        break
    raise ValueError(f"{name!r} does not name a class here")

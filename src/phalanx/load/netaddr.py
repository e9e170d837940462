"""Host names, IP and MAC addresses as a cluster may give them.

These values end up in shell scripts (`@slavename@`, `@host:NAME@`), in
`/etc/hosts` files and on network links, so only the strict forms pass: a
name that is not an RFC 1123 host name is an error, never quoted around.
"""

from __future__ import annotations

import ipaddress
import re

from phalanx.load.fields import FieldError

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


def hostname(value: str) -> str:
    """An RFC 1123 host name: dot-separated labels of letters, digits and
    inner hyphens, at most 253 characters (one trailing dot allowed)."""
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(part) for part in name.split(".")):
        raise FieldError(
            f"{value!r} is not a host name (letters, digits, hyphens and dots; "
            "each label 1-63 characters, no leading or trailing hyphen)"
        )
    return value


def ip(value: str) -> str:
    """An IPv4 or IPv6 address, in its normal written form."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise FieldError(f"{value!r} is not an IPv4 or IPv6 address") from None


def netmask(value: str) -> str:
    """A netmask (255.255.255.0) or a prefix length (24)."""
    text = value.strip()
    try:
        ipaddress.ip_network(f"0.0.0.0/{text}")
    except ValueError:
        try:
            ipaddress.ip_network(f"::/{text}")
        except ValueError:
            raise FieldError(f"{value!r} is not a netmask or a prefix length") from None
    return text


def mac(value: str) -> str:
    """A MAC address as six colon-separated hex pairs, kept in lower case."""
    if not _MAC.fullmatch(value.strip()):
        raise FieldError(f"{value!r} is not a MAC address (like 52:54:00:12:34:56)")
    return value.strip().lower()

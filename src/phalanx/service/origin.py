"""Whether a browser's write comes from the service's own pages (the check
against cross-site request forgery).

A browser sends the session cookie with any request to this host, whatever
page made it: SameSite=Lax counts another port of the same host as the same
site. What a page cannot forge is its `Origin` (and `Referer`), so a write
authenticated by the cookie must name this service's origin in one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit


def from_this_site(headers: Mapping[str, str], *, required: bool) -> bool:
    """Whether `Origin`, else `Referer`, names the `Host` the request was
    sent to. With neither: `required` decides (the API's cookie writes
    require one; a browser's fetch always sends `Origin` with a POST)."""
    host = headers.get("host", "")
    origin = headers.get("origin")
    if origin is not None and origin != "null":
        return bool(host) and urlsplit(origin).netloc == host
    referer = headers.get("referer")
    if referer:
        return bool(host) and urlsplit(referer).netloc == host
    return not required and origin is None

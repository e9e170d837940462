"""The web UI of `phalanx serve`: server-rendered pages (Jinja2), live
updates over server-sent events with htmx, readable without JavaScript.

Imported by the service app only (never by `phalanx run`). The pages read
through the same `Service` the REST API does: its store, queue, hub and
definition sources.
"""

from phalanx.service.web.pages import mount

__all__ = ["mount"]

"""The environment `phalanx serve` gives the local agents it starts, and so
their stages: a short, documented list taken from the service's own, and
nothing else. The service's environment carries its configuration and its
secrets (`PHALANX_SMTP__PASSWORD`, database URLs, cloud credentials);
anything a stage can see, a definition author can print into output every
viewer reads. `phalanx run` keeps passing the caller's whole environment:
there the caller and the definition author are the same person."""

from __future__ import annotations

from collections.abc import Mapping

# What programs need to behave as on a login shell; nothing names a secret.
KEPT = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
# The service's own CA certificate: its local agents verify its wss:// with it.
KEPT_PHALANX = ("PHALANX_AGENT_CA",)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def minimal_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The agents' environment drawn from the service's `environ`."""
    env = {k: environ[k] for k in (*KEPT, *KEPT_PHALANX) if k in environ}
    env.setdefault("PATH", DEFAULT_PATH)
    return env

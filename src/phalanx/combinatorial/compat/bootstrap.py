"""``combtest.bootstrap``: the service handler names ``run_tests`` accepts.

py-combtest brings up rpyc services (locally, or over SSH) to run walks. phalanx
runs walks on its own executors instead (``executor=`` of run_tests), so only the
default, local handler is accepted; the names exist so that imports and default
arguments keep working.
"""

from __future__ import annotations


class ServiceHandler:
    """Marker: phalanx starts no rpyc services."""


class ServiceHandler_Local(ServiceHandler):
    """The default: walks run on this machine (phalanx's local executor)."""


class ServiceHandler_SSH(ServiceHandler):
    """Not supported: use ``executor="dask-ssh://HOST1,HOST2"`` instead."""

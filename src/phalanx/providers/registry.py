"""The providers by name (a cluster's `provider:`, `phalanx run
--provider`), loaded: their names are `model.PROVIDERS` (phalanx's own, in
providers/builtin.py, and installed plug-ins', entry-point group
`phalanx.providers`, each naming a `ProviderFactory`). Each is imported
only when a run asks for it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import cast

from phalanx.model import PROVIDERS as PROVIDER_NAMES
from phalanx.model import Cluster
from phalanx.plugins import PluginError, Registry, UnknownPlugin
from phalanx.providers.agentenv import AgentUser
from phalanx.providers.base import Provider, ProviderFactory, ProviderSetup, ProvisionError


def _accept(name: str, thing: object) -> ProviderFactory:
    if not callable(thing):
        raise TypeError("it is not callable (a function or class of a ProviderSetup)")
    return cast(ProviderFactory, thing)


PROVIDERS: Registry[ProviderFactory] = Registry(PROVIDER_NAMES, _accept)


def make_provider(
    name: str,
    *,
    cluster: Cluster,
    root: Path,
    run_id: str,
    agent_env: Mapping[str, str] | None = None,
    agent_user: AgentUser | None = None,
    agent_workroot: Path | None = None,
) -> Provider:
    """The provider `name` for one run of `cluster` (see ProviderSetup).
    Raises ProvisionError: an unknown name, a plug-in that cannot load,
    or a provider that cannot serve this cluster."""
    try:
        factory = PROVIDERS.get(name)
    except (UnknownPlugin, PluginError) as exc:
        raise ProvisionError(str(exc)) from exc
    setup = ProviderSetup(cluster, root, run_id, agent_env, agent_user, agent_workroot)
    return factory(setup)

"""The providers by name (a cluster's `provider:`, `phalanx run
--provider`). Each is imported only when a run asks for it: the SSH one
brings asyncssh, which a run on local hosts has no use for."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from phalanx.model import (
    PROVIDER_LOCAL,
    PROVIDER_NETNS,
    PROVIDER_QEMU,
    PROVIDER_SSH,
    PROVIDERS,
    Cluster,
)
from phalanx.providers.agentenv import AgentUser
from phalanx.providers.base import Provider, ProvisionError


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
    """The provider `name` for one run of `cluster`; its hosts' folders go
    under `root`, and what it makes outside (namespaces, links) carries
    `run_id`, so that a crashed run's leftovers can be told apart.
    `agent_env`, `agent_user`, `agent_workroot`: the local agents'
    environment, user and where they work (None: this process's, under
    `root`; providers/agentenv.py)."""
    if name == PROVIDER_LOCAL:
        from phalanx.providers.local import LocalProvider

        return LocalProvider(root, env=agent_env, workroot=agent_workroot, user=agent_user)
    if name == PROVIDER_NETNS:
        from phalanx.providers.netns import NetnsProvider

        return NetnsProvider(cluster, root, run_id, env=agent_env)
    if name == PROVIDER_SSH:
        from phalanx.providers.ssh import SshProvider

        return SshProvider(root, run_id)
    if name == PROVIDER_QEMU:
        from phalanx.providers.qemu import QemuProvider

        return QemuProvider(root, run_id, cluster=cluster)
    if name in PROVIDERS:
        raise ProvisionError(f"phalanx cannot start {name!r} hosts itself")
    raise ProvisionError(f"no provider {name!r}; the providers are {', '.join(PROVIDERS)}")

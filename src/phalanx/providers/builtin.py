"""phalanx's own providers as `ProviderFactory`s, for the providers'
registry. Each imports its provider when called: the ssh one brings
asyncssh and the qemu one QMP, which a run of local hosts has no use for."""

from __future__ import annotations

from phalanx.providers.base import Provider, ProviderSetup, ProvisionError


def local(setup: ProviderSetup) -> Provider:
    from phalanx.providers.local import LocalProvider

    return LocalProvider(
        setup.root, env=setup.agent_env, workroot=setup.agent_workroot, user=setup.agent_user
    )


def netns(setup: ProviderSetup) -> Provider:
    from phalanx.providers.netns import NetnsProvider

    return NetnsProvider(setup.cluster, setup.root, setup.run_id, env=setup.agent_env)


def ssh(setup: ProviderSetup) -> Provider:
    from phalanx.providers.ssh import SshProvider

    return SshProvider(setup.root, setup.run_id)


def qemu(setup: ProviderSetup) -> Provider:
    from phalanx.providers.qemu import QemuProvider

    return QemuProvider(setup.root, setup.run_id, cluster=setup.cluster)


def podman(setup: ProviderSetup) -> Provider:
    from phalanx.providers.podman import PodmanProvider

    return PodmanProvider(setup.cluster, setup.root, setup.run_id, env=setup.agent_env)


def agents(setup: ProviderSetup) -> Provider:
    # Remote agents connect on their own; the coordinator waits for them.
    raise ProvisionError("phalanx cannot start 'agents' hosts itself: they connect on their own")

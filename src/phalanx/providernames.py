"""The names of phalanx's own providers (`provider:` in a cluster,
`--provider`), in a module that imports nothing: `phalanx run` decides by
them whether to start its agents' fork server before it imports the model."""

from __future__ import annotations

PROVIDER_LOCAL = "local"
PROVIDER_NETNS = "netns"
PROVIDER_SSH = "ssh"
PROVIDER_AGENTS = "agents"
PROVIDER_QEMU = "qemu"
PROVIDER_PODMAN = "podman"

"""Fixtures the providers' test modules share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.providers.containers import WHY_NOT, docker_on_podman


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment in which phalanx's container engine is Docker's CLI,
    speaking to a podman service of this module's (`docker_on_podman`)."""
    if WHY_NOT is not None:
        pytest.skip(f"container hosts: {WHY_NOT}")
    with docker_on_podman(tmp_path_factory.mktemp("docker")) as env:
        yield env

"""The VM tests' image and root disk, built (or found in this user's
content-hashed cache) once per session, before any test's timeout runs:
the test child then finds them in the cache."""

from __future__ import annotations

import pytest

from phalanx.providers.vmimage import Image, RootDisk, build_image, build_root_disk


@pytest.fixture(scope="session")
def vm_images() -> tuple[Image, RootDisk]:
    return build_image(), build_root_disk()

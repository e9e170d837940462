"""Fixtures shared across the test packages."""

from __future__ import annotations

import pytest

from phalanx.providers.vmimage import Image, RootDisk, build_image, build_root_disk


@pytest.fixture(scope="session")
def vm_images() -> tuple[Image, RootDisk]:
    """The tiny image and the root disk, built (or found in this user's
    content-hashed cache, so reusing an earlier session's is safe) once per
    session, before any test's timeout runs."""
    return build_image(), build_root_disk()

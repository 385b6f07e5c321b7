"""Test-wide setup: nothing the tests do is written outside their temporary folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The normalised network's cache goes to a temporary folder, not the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAMSTYLE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield

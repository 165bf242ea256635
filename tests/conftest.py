"""Settings every test shares."""

from __future__ import annotations

import os
import tempfile


def pytest_configure() -> None:
    # The SDK keeps its installation id in a cache directory; tests (and the processes they start) use a
    # throwaway one instead of the user's ~/.cache.
    os.environ.setdefault("EDGESEL_CACHE_DIR", tempfile.mkdtemp(prefix="edgesel-test-cache-"))

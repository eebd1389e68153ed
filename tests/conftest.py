import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # seed_reference


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory):
    """Synthetic data is cached in a folder of the test session, not the user's cache;
    subprocesses started by the tests inherit it."""
    old = os.environ.get("UNET_ABLATE_CACHE")
    os.environ["UNET_ABLATE_CACHE"] = str(tmp_path_factory.mktemp("data-cache"))
    yield
    if old is None:
        os.environ.pop("UNET_ABLATE_CACHE", None)
    else:
        os.environ["UNET_ABLATE_CACHE"] = old

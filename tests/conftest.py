"""Shared pytest setup: quiet TF, CPU only, seeded."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                           "data"))


@pytest.fixture(autouse=True)
def _seed_everything():
    import keras  # pylint: disable=import-outside-toplevel
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield


@pytest.fixture
def shared_data_dir():
    """``../shared/data`` when it exists beside the checkout, else skip."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip("../shared/data not present")
    return SHARED_DATA

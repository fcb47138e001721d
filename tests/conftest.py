"""Shared pytest setup: quiet TF, CPU only, seeded."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                           "data"))


def shared_data(*parts):
    """The path ``parts`` under the shared data folder, found as the commands find it:
    ``$OPEN_L2O_DATA_DIR`` when set, else ``../shared/data`` beside the checkout; None
    when it is not there."""
    root = os.environ.get("OPEN_L2O_DATA_DIR") or SHARED_DATA
    path = os.path.join(root, *parts)
    return path if os.path.exists(path) else None


@pytest.fixture(autouse=True)
def _seed_everything():
    import keras  # pylint: disable=import-outside-toplevel
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield


@pytest.fixture
def shared_data_dir():
    """The shared data folder (:func:`shared_data`), else skip."""
    root = shared_data()
    if root is None or not os.path.isdir(root):
        pytest.skip("no shared data: set OPEN_L2O_DATA_DIR (or put it at ../shared/data)")
    return root

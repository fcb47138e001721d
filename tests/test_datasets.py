"""MNIST/CIFAR loading from local files, the environment variable, tfds, and the errors."""
import gzip
import os

import numpy as np
import pytest

from open_l2o_tf.data import datasets
from open_l2o_tf.errors import UserError


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 5)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return tmp_path


def test_local_idx(idx_dir):
    images, labels = datasets.load_mnist(str(idx_dir))
    assert images.shape == (12, 28, 28, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and labels.dtype == np.int32
    assert datasets.load_mnist(str(idx_dir), "test")[0].shape == (5, 28, 28, 1)


def test_environment_variable(idx_dir, tmp_path, monkeypatch):
    root = tmp_path / "root"
    os.makedirs(root)
    os.symlink(idx_dir, root / "mnist")
    monkeypatch.setenv("OPEN_L2O_DATA_DIR", str(root))
    assert datasets.load_mnist()[0].shape == (12, 28, 28, 1)


def test_corrupt_and_missing(tmp_path, monkeypatch):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"nonsense")
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"nonsense")
    with pytest.raises(UserError, match="not a valid idx file"):
        datasets.load_mnist(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz"):
        datasets.load_mnist(str(empty))


def test_nothing_available_names_the_files(monkeypatch):
    import tensorflow_datasets as tfds
    monkeypatch.delenv("OPEN_L2O_DATA_DIR", raising=False)

    def fail(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(tfds, "load", fail)
    with pytest.raises(UserError) as err:
        datasets.load_mnist()
    message = str(err.value)
    assert "\n" not in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "--mnist_dir" in message


def test_tfds_mock_data(monkeypatch):
    import tensorflow_datasets as tfds
    monkeypatch.delenv("OPEN_L2O_DATA_DIR", raising=False)
    with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_CODE):
        images, labels = datasets.load_mnist(split="train")
    assert images.shape == (7, 28, 28, 1) and labels.shape == (7,)


def test_cifar_binary(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rng.integers(0, 10, (3, 3073)).astype(np.uint8).tofile(folder / name)
    images, labels = datasets.load_cifar10(str(tmp_path))
    assert images.shape == (15, 32, 32, 3) and labels.max() < 10


def test_shared_mnist(shared_data_dir):
    folder = os.path.join(shared_data_dir, "mnist")
    if not os.path.isdir(folder):
        pytest.skip("no mnist")
    images, labels = datasets.load_mnist(folder)
    assert images.shape == (60000, 28, 28, 1) and len(labels) == 60000
    assert abs(float(images.mean()) - 0.1307) < 0.002


def test_tfds_mnist_builder_reaches_its_download_info(tmp_path):
    """Without network: tensorflow-datasets builds the MNIST builder and its download
    information (the four URLs with sizes and sha256) -- what tfds.load needs right before
    downloading.  Fails when a module TFDS imports on that path is missing (4.9.10 needs
    importlib_resources, declared in setup.py)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    builder = tfds.builder("mnist", data_dir=str(tmp_path))
    infos = builder.url_infos
    names = sorted(info.filename for info in infos.values())
    assert names == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                     "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert all(url.startswith("https://") and len(info.checksum) == 64
               for url, info in infos.items())
    ours = sorted(f + ".gz" for pair in datasets.MNIST_FILES.values() for f in pair)
    assert names == ours      # the files our "download them yourself" message names

"""MNIST/CIFAR loading from local files, the environment variable, tfds, and the errors."""
import gzip
import os
import socket

import numpy as np
import pytest

from open_l2o_tf.data import datasets
from open_l2o_tf.errors import UserError


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def write_tiny_mnist(folder, train=64, test=32, seed=0):
    """Random MNIST idx files (``train`` / ``test`` 28x28 images, labels 0-9) in ``folder``
    (created), the four files a ``--mnist_dir`` holds; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("t10k", test)):
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return folder


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


def test_mnist_pixels_labels_and_order(tmp_path):
    """Known images (a bright pixel at a different (row, col) per image, label = index)
    come back pixel for pixel, in order, rows first, scaled by 1/255; unzipped files too."""
    n = 6
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        images[i, 2 * i, 27 - 3 * i] = 255
        images[i, 27, :] = np.arange(28) * 9      # a ramp along the last row
    labels = np.arange(n) % 10
    for split in ("train", "t10k"):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    got, got_labels = datasets.load_mnist(str(tmp_path))
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_allclose(got[..., 0], images / 255.0, rtol=0, atol=1e-7)
    for i in range(n):
        assert got[i, 2 * i, 27 - 3 * i, 0] == 1.0
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        with gzip.open(tmp_path / f"{name}.gz", "rb") as src:
            (plain / name).write_bytes(src.read())
    np.testing.assert_array_equal(datasets.load_mnist(str(plain))[0], got)


def test_mnist_train_images_holds_out_the_first_as_tensorflow(tmp_path):
    """--mnist_train_images=N trains on the LAST N images of the training split, as the
    original's loader (TensorFlow's read_data_sets holds out the first validation_size);
    --mnist_holdout=last keeps the first N (the choice before)."""
    n = 12
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None] * 20, 28 * 28).reshape(
        n, 28, 28)
    labels = np.arange(n) % 10
    for split in ("train", "t10k"):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    full, full_labels = datasets.load_mnist(str(tmp_path))
    kept, kept_labels = datasets.mnist_train_subset(full, full_labels, 7)
    np.testing.assert_array_equal(np.round(kept[:, 0, 0, 0] * 255 / 20), np.arange(5, 12))
    np.testing.assert_array_equal(kept_labels, labels[5:])
    first, _ = datasets.mnist_train_subset(full, full_labels, 7, holdout="last")
    np.testing.assert_array_equal(np.round(first[:, 0, 0, 0] * 255 / 20), np.arange(7))
    with pytest.raises(UserError, match="holds 12 images"):
        datasets.mnist_train_subset(full, full_labels, 13)


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


def test_offline_fails_at_once_without_a_download(monkeypatch):
    """No local data, nothing downloaded by tfds, and its download host unreachable: one
    message naming the files, and tfds is never asked to download (it would retry each URL
    for minutes)."""
    import tensorflow_datasets as tfds
    monkeypatch.delenv("OPEN_L2O_DATA_DIR", raising=False)
    calls = []

    def load(*args, download=True, **kwargs):
        calls.append(download)
        raise RuntimeError("not prepared" if not download else "tried to download")

    monkeypatch.setattr(tfds, "load", load)
    monkeypatch.setattr(datasets, "reachable", lambda host, **kw: False)
    with pytest.raises(UserError) as err:
        datasets.load_mnist(split="test")
    assert calls == [False]
    message = str(err.value)
    assert "cannot reach storage.googleapis.com" in message
    assert "t10k-images-idx3-ubyte.gz" in message and "--mnist_dir" in message


def test_reachable_is_false_for_a_closed_port():
    with socket.socket() as sock:   # a port bound but not listening refuses connections
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert not datasets.reachable("127.0.0.1", port=port, timeout=1.0)


def test_tfds_mock_data(monkeypatch):
    import tensorflow_datasets as tfds
    monkeypatch.delenv("OPEN_L2O_DATA_DIR", raising=False)
    with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_CODE):
        images, labels = datasets.load_mnist(split="train")
    assert images.shape == (7, 28, 28, 1) and labels.shape == (7,)


def _cifar_record(image_hwc, label):
    """One CIFAR-10 binary record: the label byte, then the red, green and blue planes,
    each 32x32 row-major (the dataset's documented layout)."""
    planes = [image_hwc[:, :, c].reshape(-1) for c in range(3)]
    return np.concatenate([[label]] + planes).astype(np.uint8)


def test_cifar_binary(tmp_path):
    """Images built in HWC are encoded as CIFAR records and must come back pixel for pixel:
    a wrong CHW->HWC transpose, channel order or batch order fails."""
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    expected = {"train": ([], []), "test": ([], [])}
    for index, name in enumerate([f"data_batch_{i}.bin" for i in range(1, 6)]
                                 + ["test_batch.bin"]):
        split = "test" if name.startswith("test") else "train"
        records = []
        for j in range(3):
            image = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
            image[0, 0] = (255, 0, 0) if j == 0 else image[0, 0]   # a pure red corner
            label = (3 * index + j) % 10
            records.append(_cifar_record(image, label))
            expected[split][0].append(image)
            expected[split][1].append(label)
        np.stack(records).tofile(folder / name)
    for split in ("train", "test"):
        images, labels = datasets.load_cifar10(str(tmp_path), split)
        want_images, want_labels = (np.stack(a) for a in expected[split])
        assert images.shape == (len(want_labels), 32, 32, 3) and images.dtype == np.float32
        np.testing.assert_array_equal(labels, want_labels)
        np.testing.assert_allclose(images, want_images / 255.0, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(images[0, 0, 0], [1.0, 0.0, 0.0])
    (folder / "test_batch.bin").write_bytes(b"x" * 100)
    with pytest.raises(UserError, match="not a CIFAR-10 binary batch"):
        datasets.load_cifar10(str(tmp_path), "test")


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

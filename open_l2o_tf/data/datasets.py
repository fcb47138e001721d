"""MNIST and CIFAR-10 from a local directory or tensorflow-datasets.

Where the data comes from, in order: the ``data_dir`` argument (the ``--mnist_dir`` /
``--data_dir`` flags), then ``$OPEN_L2O_DATA_DIR`` (its ``mnist/`` or ``cifar10/``
subfolder, or the folder itself), then ``tensorflow_datasets`` (already downloaded data
first, then a download).  When nothing works a :class:`UserError` says what to download
and where to put it.

Local formats: MNIST as the four idx files (``train-images-idx3-ubyte[.gz]`` ...);
CIFAR-10 as the binary version (``cifar-10-batches-bin/data_batch_{1..5}.bin``,
``test_batch.bin``).  Images are float32 in [0, 1], NHWC; labels int32.
"""
import gzip
import os
import socket

import numpy as np

from open_l2o_tf.errors import UserError

MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_HELP = ("download the four MNIST files train-images-idx3-ubyte.gz, "
              "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz "
              "(e.g. from https://storage.googleapis.com/cvdf-datasets/mnist/) into a folder and "
              "pass it with --mnist_dir=DIR or put them in $OPEN_L2O_DATA_DIR/mnist")
CIFAR_HELP = ("download cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/ and "
              "unpack it so that DIR/cifar-10-batches-bin/data_batch_1.bin exists; pass "
              "--data_dir=DIR or use $OPEN_L2O_DATA_DIR/cifar10")


def _check_split(split):
    if split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test', got {split!r}")


def read_idx(path):
    """Reads one idx file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
        zero, dtype_code, ndim = data[0] * 256 + data[1], data[2], data[3]
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("bad magic number")
        shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
        expected, found = int(np.prod(shape)), len(data) - 4 - 4 * ndim
        if found != expected:
            raise ValueError(f"{'truncated' if found < expected else 'trailing bytes'}: "
                             f"the header announces shape {shape} = {expected} bytes, the "
                             f"file holds {found}")
        array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
        return array.reshape(shape)
    except Exception as err:  # pylint: disable=broad-except
        raise UserError(f"{path} is not a valid idx file ({err})") from None


def _find(folder, stem):
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    return None


def _local_mnist(folder, split):
    for candidate in (os.path.join(folder, "mnist"), folder):
        image_path = _find(candidate, MNIST_FILES[split][0])
        label_path = _find(candidate, MNIST_FILES[split][1])
        if image_path and label_path:
            images, labels = read_idx(image_path), read_idx(label_path)
            for path, array, ndim, what in ((image_path, images, 3, "images (N, 28, 28)"),
                                            (label_path, labels, 1, "labels (N,)")):
                if array.ndim != ndim:
                    raise UserError(f"{path} holds an array of shape {array.shape}, expected "
                                    f"{what}; are the image and label files swapped?")
            if images.shape[1:] != (28, 28):
                raise UserError(f"{image_path} holds images of {images.shape[1]}x"
                                f"{images.shape[2]} pixels, expected MNIST's 28x28")
            if len(images) == 0:
                raise UserError(f"{image_path} holds no images (shape {images.shape})")
            if len(images) != len(labels):
                raise UserError(f"{image_path} has {len(images)} images but {label_path} "
                                f"has {len(labels)} labels")
            if labels.max() > 9:
                raise UserError(f"{label_path} holds label {int(labels.max())} at index "
                                f"{int(np.argmax(labels))}, expected digits 0..9")
            images = images.astype(np.float32)[..., None] / 255.0
            labels = labels.astype(np.int32)
            return images, labels
    return None


# where tensorflow-datasets downloads each data set from (its builders' URLs)
DOWNLOAD_HOSTS = {"mnist": "storage.googleapis.com", "cifar10": "www.cs.toronto.edu"}


def reachable(host, port=443, timeout=5.0):
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    Asked before a tensorflow-datasets download: without a network tfds retries each of
    its URLs for minutes (and its download threads hold off Ctrl-C) before it fails."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tfds(name, split, help_text):
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
        from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
        verbosity = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.ERROR)  # tfds' notes on a missing folder
        try:
            data = tfds.load(name, split=split, as_supervised=True, download=False)
        except Exception:  # pylint: disable=broad-except
            absl_logging.set_verbosity(verbosity)   # a download's own progress is shown
            host = DOWNLOAD_HOSTS.get(name)
            if host and not reachable(host):
                raise UserError(f"no local {name} data found, tensorflow-datasets has not "
                                f"downloaded it and cannot reach {host} to do so; "
                                f"{help_text}") from None
            data = tfds.load(name, split=split, as_supervised=True)
        finally:
            absl_logging.set_verbosity(verbosity)
        pairs = list(tfds.as_numpy(data.batch(10000)))
        images = np.concatenate([p[0] for p in pairs])
        labels = np.concatenate([p[1] for p in pairs])
        return images.astype(np.float32) / 255.0, labels.astype(np.int32)
    except UserError:
        raise
    except Exception as err:  # pylint: disable=broad-except
        raise UserError(f"no local {name} data found and tensorflow-datasets could not "
                        f"provide it ({type(err).__name__}); {help_text}") from None


def _sources(data_dir):
    sources = []
    if data_dir:
        if not os.path.isdir(data_dir):
            raise UserError(f"data directory {data_dir} does not exist")
        sources.append(data_dir)
    if os.environ.get("OPEN_L2O_DATA_DIR"):
        sources.append(os.environ["OPEN_L2O_DATA_DIR"])
    return sources


def load_mnist(data_dir=None, split="train"):
    """``(images (N, 28, 28, 1) float32 in [0, 1], labels (N,) int32)``."""
    _check_split(split)
    explicit = data_dir
    for folder in _sources(data_dir):
        found = _local_mnist(folder, split)
        if found is not None:
            return found
        if folder == explicit:
            raise UserError(f"--mnist_dir {folder} does not hold the MNIST idx files; "
                            f"{MNIST_HELP}")
    return _tfds("mnist", split, MNIST_HELP)


MNIST_HOLDOUTS = ("first", "last")


def mnist_train_subset(images, labels, count, holdout="first"):
    """``count`` images (and labels) of the MNIST training split, the others held out.

    ``holdout="first"``: the first ``len - count`` are held out and the last ``count`` kept,
    as TensorFlow's ``read_data_sets(validation_size=len - count)``, which the original's
    ``load_mnist`` calls with 5,000 (tensorflow/contrib/learn/python/learn/datasets/mnist.py:
    ``validation_images = train_images[:validation_size]``, ``train_images =
    train_images[validation_size:]``): ``count=55000`` is images 5,000..59,999.
    ``holdout="last"``: the first ``count`` are kept (this toolbox's choice before)."""
    if holdout not in MNIST_HOLDOUTS:
        raise UserError(f"holdout must be one of {MNIST_HOLDOUTS}, got {holdout!r}")
    if not 1 <= count <= len(images):
        raise UserError(f"--mnist_train_images={count}, but the training split holds "
                        f"{len(images)} images")
    keep = slice(len(images) - count, None) if holdout == "first" else slice(0, count)
    return images[keep], labels[keep]


def _local_cifar(folder, split):
    for candidate in (os.path.join(folder, "cifar10", "cifar-10-batches-bin"),
                      os.path.join(folder, "cifar-10-batches-bin"), folder):
        names = ([f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train"
                 else ["test_batch.bin"])
        paths = [os.path.join(candidate, n) for n in names]
        if all(os.path.exists(p) for p in paths):
            records = []
            for path in paths:
                raw = np.fromfile(path, np.uint8)
                if raw.size % 3073:
                    raise UserError(f"{path} is not a CIFAR-10 binary batch")
                records.append(raw.reshape(-1, 3073))
            raw = np.concatenate(records)
            images = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            return images.astype(np.float32) / 255.0, raw[:, 0].astype(np.int32)
    return None


def load_cifar10(data_dir=None, split="train"):
    """``(images (N, 32, 32, 3) float32 in [0, 1], labels (N,) int32)``."""
    _check_split(split)
    for folder in _sources(data_dir):
        found = _local_cifar(folder, split)
        if found is not None:
            return found
        if folder == data_dir:
            raise UserError(f"--data_dir {folder} does not hold CIFAR-10; {CIFAR_HELP}")
    return _tfds("cifar10", split, CIFAR_HELP)

"""Fidelity to the original Open-L2O protocols (issue 10): data splits, ISTA/FISTA steps,
L2O-Swarm start, L2O-Scale as the original trains it."""
import numpy as np
import pytest
import tensorflow as tf

from tests.cli import run_ok
from tests.test_datasets import _write_idx


def test_nn_training_split_per_method(tmp_path):
    """Learned optimizers run on the MNIST test split, classic ones on the training split
    (the original's util.get_config modes); --mnist_split overrides; results.json says."""
    from model_free import pretrained
    from model_free.dm import L2ODM
    rng = np.random.default_rng(0)
    data = tmp_path / "mnist"
    data.mkdir()
    _write_idx(data / "train-images-idx3-ubyte.gz", np.zeros((64, 28, 28)))
    _write_idx(data / "train-labels-idx1-ubyte.gz", np.zeros(64))
    _write_idx(data / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (32, 28, 28)))
    _write_idx(data / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 32))
    path = str(tmp_path / "dm.npz")
    pretrained.save_optimizer(L2ODM(), path)
    common = ["--steps=2", "--runs=1", f"--mnist_dir={data}", "--problem=mnist_mlp_relu"]
    sgd = run_ok("run.nn_training", "--optimizer=sgd", *common, workdir=tmp_path / "sgd")
    dm = run_ok("run.nn_training", "--optimizer=l2o_dm", f"--load={path}", *common,
                workdir=tmp_path / "dm")
    sgd_test = run_ok("run.nn_training", "--optimizer=sgd", "--mnist_split=test", *common,
                      workdir=tmp_path / "sgd_test")
    assert (sgd["mnist_split"], dm["mnist_split"], sgd_test["mnist_split"]) == (
        "train", "test", "test")
    # all-zero training images with label 0 vs random test images: other losses
    assert abs(sgd["curve"][0] - sgd_test["curve"][0]) > 1e-5

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


def test_ista_step_rules():
    """1/||A||_F^2 (the step that reproduces Fig. 6) or 1/||A||_2^2; the smaller Frobenius
    step makes ISTA slower."""
    from open_l2o_tf.classic import ista_fista
    rng = np.random.default_rng(0)
    A = rng.normal(size=(5, 10)).astype(np.float32)
    y = rng.normal(size=(8, 5)).astype(np.float32)
    fro = ista_fista.step_size(A, "frobenius").numpy()
    np.testing.assert_allclose(fro, 1.0 / np.sum(A ** 2), rtol=1e-5)
    spec = ista_fista.step_size(A, "spectral").numpy()
    np.testing.assert_allclose(spec, 1.0 / np.linalg.norm(A, 2) ** 2, rtol=1e-4)
    both = ista_fista.step_size(np.stack([A, 2 * A]), "frobenius").numpy()
    np.testing.assert_allclose(both[:, 0], [fro, fro / 4], rtol=1e-5)
    _, slow = ista_fista.ista(A, y, 0.005, 30, step=fro)
    _, fast = ista_fista.ista(A, y, 0.005, 30, step=spec)
    assert np.mean(slow[-1]) > np.mean(fast[-1])


def test_swarm_starts_around_the_origin_as_the_original():
    """The original starts the particles N(0, 0.01^2) around the origin (meta.py vars_init),
    so its curves start at f(0) whatever the test starts; ``test_start`` starts them at x0."""
    from model_free import swarm as swarm_lib
    from open_l2o_tf.optimizees.rastrigin import Rastrigin
    fam = Rastrigin(n=2, batch_size=6)
    inst = fam.sample_instance(0)
    x0 = fam.init_params(1, inst)[0]
    sw = swarm_lib.L2OSwarm(dim=2)
    origin = swarm_lib.swarm_minimize(sw, fam, inst, x0, 2)
    f0 = fam.instance_losses([tf.zeros_like(x0)], inst).numpy()
    np.testing.assert_allclose(origin[0], f0, atol=2.5)
    np.testing.assert_allclose(swarm_lib.swarm_minimize(sw, fam, inst, x0 + 5.0, 2), origin)
    at_start = swarm_lib.swarm_minimize(sw, fam, inst, x0, 2, start="test_start")
    np.testing.assert_allclose(at_start[0], fam.instance_losses([x0], inst).numpy(), atol=2.5)
    assert np.max(np.abs(at_start[0] - origin[0])) > 5.0

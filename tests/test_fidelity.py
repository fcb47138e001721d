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
    from model_free.rules.dm import L2ODM
    from model_free.weights import pretrained
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
    from model_free.rules import swarm as swarm_lib
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


def test_scale_log_lr_offsets_are_drawn_afresh_per_tensor():
    """hierarchical_rnn.py _initialize_state: an offset per tensor, new at every
    initialisation (ours drew one offset from a fixed seed)."""
    import keras
    from model_free.rules.scale import L2OScale
    keras.utils.set_random_seed(0)
    opt = L2OScale()
    params = [tf.zeros([2000]), tf.zeros([2000]), tf.zeros([2000])]
    a = opt.initial_state(params)[5].numpy()[:, 0]
    b = opt.initial_state(params)[5].numpy()[:, 0]
    assert not np.allclose(a, b)
    # per-scalar noise moves a tensor's mean by ~0.015; the offsets by ~U(-9.2, -2.3)
    assert np.ptp(a.reshape(3, 2000).mean(axis=1)) > 0.1
    fixed = L2OScale(fresh_offsets=False)
    np.testing.assert_array_equal(fixed.initial_state(params)[5], fixed.initial_state(params)[5])


def test_scale_state_is_carried_across_episodes_and_rmsprop_as_tf1():
    """metaopt.py resets the optimizer state only at the first meta-iteration; its RMSProp
    (TF1) starts the accumulator at 1 with epsilon 1e-20."""
    from model_free.meta.meta_trainer import MetaTrainer
    from model_free.rules.scale import L2OScale
    from model_free.rules.scale import tf1_rmsprop
    from open_l2o_tf.optimizees.quadratic import Quadratic
    opt = L2OScale(batched_instances=True)
    meta = tf1_rmsprop(1e-6, opt)
    assert meta.epsilon == pytest.approx(1e-20)
    assert all(np.all(v.numpy() == 1.0) for v in meta.variables if "velocit" in v.path)
    trainer = MetaTrainer(opt, Quadratic(dim=3, batch_size=4), unroll=10, truncation=5,
                          progress=None, meta_objective="log_ratio", carry_state=True,
                          meta_optimizer=meta)
    seen, run = [], trainer.unroller.single

    def spy(params, state, *rest):
        seen.append(state)
        return run(params, state, *rest)

    trainer.unroller.single = spy
    trainer.run_episode(0)
    end = trainer.carried.state
    trainer.run_episode(1)
    for a, b in zip(tf.nest.flatten(seen[2]), tf.nest.flatten(end)):
        np.testing.assert_array_equal(a, b)
    assert float(seen[2][-1]) == 10.0       # the step counter goes on: no reset

"""Every per-step learned update rule as a Keras optimizer (``LearnedKerasOptimizer``):
under ``model.fit`` on an MLP and a small ConvNet it gives the loss curve of the toolbox's
own loop (run.nn_training's runner: same initial weights, same minibatches, same learned
weights, same initial state) to float round-off, for L2O-DM, L2O-RNNprop, L2O-enhanced
and L2O-Scale (coupled over all tensors); a model compiled with it saves and loads with
``model.save`` / ``keras.saving.load_model`` and continues identically.  (L2O-DM is
the L2O-enhanced class: one curve test covers both.)"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from model_free.keras_optimizer import LearnedKerasOptimizer
from model_free.measure import perf
from model_free.meta.training import build_optimizer
from open_l2o_tf.optimizees.networks import MnistConv, MnistMLP

STEPS = 6


def _images(num=96, size=14, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, num).astype(np.int32)
    images = rng.random((num, size, size, 1)).astype(np.float32) * 0.3
    images[np.arange(num), labels, :, 0] += 0.7
    return images, labels


def _problem(kind):
    images, labels = _images()
    if kind == "mlp":
        return MnistMLP(images, labels, activation="relu", hidden=8, batch_size=16)
    return MnistConv(images, labels, batch_size=16, relu_logits=False)


def _learned(name):
    """The registry entry built for a network, moved off its initialisation (seeded)."""
    opt = build_optimizer(name, synthetic=False)
    rng = np.random.default_rng(3)
    for v in opt.trainable_variables:
        v.assign(v + 0.05 * rng.normal(size=v.shape).astype(np.float32))
    if name == "l2o_scale":
        opt.lr_offset.assign(6.0)       # steps large enough to move the tiny networks
    else:
        opt.output_scale = 0.1
    return opt


def test_enhanced_is_the_dm_rule():
    """L2O-enhanced is the L2O-DM network trained otherwise (the registry entry names the
    L2O-DM class): its curve test below covers L2O-DM's update too."""
    dm, enhanced = build_optimizer("l2o_dm", False), build_optimizer("l2o_enhanced", False)
    assert type(dm) is type(enhanced)
    assert {k: v for k, v in dm.get_config().items() if k != "name"} == \
        {k: v for k, v in enhanced.get_config().items() if k != "name"}


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("name", ["l2o_enhanced", "l2o_rnnprop", "l2o_scale"])
def test_model_fit_gives_the_toolbox_loop_curve(name, kind):
    problem = _problem(kind)
    learned = _learned(name)
    own = perf.own_loop_curve(learned, problem, STEPS, seed=2)
    model = perf.keras_model_of(problem, LearnedKerasOptimizer(learned,
                                                               seed=perf.keras_seed(2)), 2)
    fit = perf.fit_curve(model, problem, STEPS, seed=2)
    assert fit.shape == own.shape == (STEPS + 1,)
    assert np.abs(own - own[0]).max() > 1e-3 * abs(own[0])   # the optimizer moved the net
    np.testing.assert_allclose(fit, own, rtol=2e-4, atol=1e-6)


def test_scale_state_is_the_whole_hierarchy():
    """L2O-Scale keeps per-coordinate, per-tensor and global states as optimizer
    variables sized by the whole variable list."""
    problem = _problem("mlp")
    opt = LearnedKerasOptimizer(_learned("l2o_scale"), seed=[1, 2])
    model = perf.keras_model_of(problem, opt)
    opt.build(model.trainable_variables)
    n = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    shapes = [tuple(v.shape) for v in opt._state_vars]       # pylint: disable=protected-access
    assert shapes[:3] == [(n, 10), (4, 20), (1, 20)]
    assert shapes[-1] == ()


def test_saved_model_continues_identically(tmp_path):
    """``model.save`` then ``keras.saving.load_model`` restores the weights, the
    hierarchical state and the learned weights: training continues as without the round
    trip (the fresh-process load: tests/test_keras_registration.py)."""
    problem = _problem("mlp")
    model = perf.keras_model_of(problem, LearnedKerasOptimizer(_learned("l2o_scale"),
                                                               seed=[4, 1]))
    perf.fit_curve(model, problem, 3, seed=1)                # a non-trivial state
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    assert type(loaded.optimizer.learned).__name__ == "L2OScale"
    assert int(loaded.optimizer.iterations) == 3
    expected = perf.fit_curve(model, problem, 4, seed=5)
    np.testing.assert_allclose(perf.fit_curve(loaded, problem, 4, seed=5), expected,
                               rtol=1e-6)


def test_coupled_optimizer_leaves_a_variable_without_gradient():
    x = tf.constant(np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32))
    used = keras.Variable(np.ones((3, 1), np.float32))
    unused = keras.Variable(np.ones((2,), np.float32))
    opt = LearnedKerasOptimizer(_learned("l2o_scale"), seed=[0, 1])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(x @ used - 1.0))
    grads = tape.gradient(loss, [used, unused])
    opt.apply(grads, [used, unused])
    assert not np.allclose(used.numpy(), 1.0)
    np.testing.assert_array_equal(unused.numpy(), np.ones(2, np.float32))

"""Learned optimizers: state handling, features, pretrained weights, the Keras wrapper."""
import os
import pickle

import keras
import numpy as np
import pytest
import tensorflow as tf

from model_free.keras_optimizer import LearnedKerasOptimizer
from model_free.rules import features
from model_free.rules.base import flatten, unflatten
from model_free.rules.dm import L2ODM
from model_free.rules.rnnprop import L2ORNNprop
from model_free.weights import pretrained
from open_l2o_tf.errors import UserError

SHAPES = [(3, 4), (5,), (2, 2, 2)]


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=s), tf.float32) for s in SHAPES]


@pytest.mark.parametrize("cls", [L2ODM, L2ORNNprop])
def test_mixed_shapes_and_state(cls):
    opt = cls()
    params = _params()
    state = opt.initial_state(params)
    grads = _params(1)
    steps, new_state = opt.update(grads, state, params)
    assert [tuple(s.shape) for s in steps] == SHAPES
    assert tf.nest.map_structure(lambda t: tuple(t.shape), new_state) == \
        tf.nest.map_structure(lambda t: tuple(t.shape), state)
    compiled = tf.function(opt.update)
    steps2, _ = compiled(grads, state, params)
    for a, b in zip(steps, steps2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    clone = cls.from_config(opt.get_config())
    clone.set_weights(opt.get_weights())
    np.testing.assert_allclose(clone.update(grads, state)[0][0], steps[0], rtol=1e-6)


def _lstm_cells(opt):
    return [opt.lstm_1, opt.lstm_2]


@pytest.mark.parametrize("make", [lambda **k: L2ODM(preprocess="identity", output_scale=1.0, **k),
                                  lambda **k: L2ODM(**k), lambda **k: L2ORNNprop(**k)],
                         ids=["dm_synthetic", "dm", "rnnprop"])
def test_lstm_bias_drawn_independently_of_weights(make):
    """Sonnet 1's snt.LSTM (the original's cores) draws b_gates and w_gates independently;
    one shared unseeded Keras 3 initializer made b_gates a copy of w_gates' first row."""
    keras.utils.set_random_seed(0)
    opt = make()
    for cell in _lstm_cells(opt):
        w, b = cell.w_gates.numpy(), cell.b_gates.numpy()
        std = 1.0 / np.sqrt(cell.input_dim + cell.units)
        assert not any(np.allclose(row, b) for row in w), cell.name
        assert 0.6 * std < b.std() < 1.2 * std and np.abs(b).max() <= 2 * std + 1e-6
    keras.utils.set_random_seed(0)
    tied = make(tied_lstm_init=True)      # the former initialisation, kept behind the flag
    assert tied.get_config()["tied_lstm_init"] is True
    for cell in _lstm_cells(tied):
        np.testing.assert_array_equal(cell.b_gates.numpy(), cell.w_gates.numpy()[0])


def test_flatten_round_trip():
    params = _params()
    back = unflatten(flatten(params), params)
    assert all(np.array_equal(a, b) for a, b in zip(params, back))


def test_log_and_sign_by_hand():
    g = tf.constant([[1.0], [-1e-4], [0.0], [-2.0]])
    out = features.log_and_sign(g, 5.0).numpy()
    eps = np.finfo(np.float32).eps
    expect_log = [np.log(1 + eps) / 5, max(np.log(1e-4 + eps) / 5, -1), -1.0,
                  np.log(2 + eps) / 5]
    expect_sign = [1.0, -1e-4 * np.exp(5), 0.0, -1.0]
    np.testing.assert_allclose(out[:, 0], expect_log, rtol=1e-5)
    np.testing.assert_allclose(out[:, 1], expect_sign, rtol=1e-5)


def test_rnnprop_features_by_hand():
    g1, g2 = 0.5, -1.0
    m = v = tf.zeros([1, 1])
    _, m, v = features.rnnprop_features(tf.constant([[g1]]), m, v, 1.0)
    out, m, v = features.rnnprop_features(tf.constant([[g2]]), m, v, 2.0)
    mm = 0.95 * 0.05 * g1 + 0.05 * g2
    vv = 0.95 * 0.05 * g1 ** 2 + 0.05 * g2 ** 2
    m_hat, v_hat = mm / (1 - 0.95 ** 2), vv / (1 - 0.95 ** 2)
    denom = np.sqrt(v_hat) + 1e-8
    np.testing.assert_allclose(out.numpy()[0], [m_hat / denom, g2 / denom], rtol=1e-5)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/open_l2o_tf_pwned",))


def test_refuses_malicious_pickle(tmp_path):
    path = tmp_path / "evil.cw.l2l-0"
    if os.path.exists("/tmp/open_l2o_tf_pwned"):
        os.remove("/tmp/open_l2o_tf_pwned")
    with open(path, "wb") as handle:
        pickle.dump({"lstm_1": {"w_gates": _Evil()}}, handle)
    with pytest.raises(UserError, match="refus"):
        pretrained.safe_load_pickle(str(path))
    assert not os.path.exists("/tmp/open_l2o_tf_pwned")
    with pytest.raises(UserError, match="does not exist"):
        pretrained.load_optimizer(str(tmp_path / "missing"))


def test_save_and_load_our_format(tmp_path):
    opt = L2ORNNprop()
    path = str(tmp_path / "opt.npz")
    pretrained.save_optimizer(opt, path)
    name, loaded = pretrained.load_optimizer(path)
    assert name == "l2o_rnnprop"
    for a, b in zip(opt.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def _mnist_like(num=2048, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, num).astype(np.int32)
    images = rng.random((num, 28, 28, 1)).astype(np.float32) * 0.2
    images[np.arange(num), 2 * labels + 3, :, 0] += 0.8
    return images, labels


def test_original_weights_load_and_train(shared_data_dir):
    from model_free.meta.meta_trainer import evaluate
    from open_l2o_tf.optimizees.networks import MnistMLP
    folder = os.path.join(shared_data_dir, "original_optimizers")
    name, dm = pretrained.load_optimizer(os.path.join(folder, "dm.cw.l2l-0"))
    assert name == "l2o_dm" and dm.output_scale == 0.01
    assert pretrained.load_optimizer(os.path.join(folder, "rnnprop.rp.l2l-0"))[0] == "l2o_rnnprop"
    mlp = MnistMLP(*_mnist_like(), activation="sigmoid", batch_size=128)
    curve = evaluate(dm, mlp, 150, {}, mlp.init_params(0), seed=1, grad_scale=1.0)[:, 0]
    assert curve[0] == pytest.approx(np.log(10), abs=0.05)
    assert curve[-20:].mean() < 0.7 * curve[:5].mean()


def _regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype(np.float32)
    return x, (x @ rng.normal(size=(8, 1))).astype(np.float32)


def test_keras_wrapper_zero_rule_leaves_weights():
    x, y = _regression()
    learned = L2ODM()
    learned.linear.kernel.assign(np.zeros((20, 1), np.float32))   # step = bias = 0
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer=LearnedKerasOptimizer(learned), loss="mse")
    before = model.get_weights()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert len(model.optimizer.variables) > 4      # the recurrent state lives there


def test_keras_wrapper_trains_with_original_dm(shared_data_dir):
    _, learned = pretrained.load_optimizer(
        os.path.join(shared_data_dir, "original_optimizers", "dm.cw.l2l-0"))
    images, labels = _mnist_like(2048)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(20, activation="sigmoid"),
                              keras.layers.Dense(10)])
    model.compile(optimizer=LearnedKerasOptimizer(learned),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = model.fit(images, labels, epochs=3, batch_size=128, verbose=0).history["loss"]
    assert hist[-1] < 0.7 * hist[0]


def test_lstm_init_option_builds_the_tied_draw_and_refuses_optimizers_without_one():
    """--lstm_init=tied (build_optimizer's lstm_init) gives the former draw: each b_gates a
    copy of its w_gates' first row, L2O-Scale's tied initial states and readouts
    (tied_init), L2O-Swarm's tied LSTMs and attention (lstm_init_options); the default
    draws them apart; an optimizer with no former tied draw refuses it."""
    from model_free.meta.training import build_optimizer, lstm_init_options
    from model_free.rules.swarm import L2OSwarm
    from open_l2o_tf.errors import UserError
    for name in ("l2o_dm", "l2o_rnnprop", "l2o_enhanced"):
        keras.utils.set_random_seed(0)
        tied = build_optimizer(name, True, lstm_init="tied")
        keras.utils.set_random_seed(0)
        fresh = build_optimizer(name, True)
        assert tied.tied_lstm_init and not fresh.tied_lstm_init
        for opt, same in ((tied, True), (fresh, False)):
            for cell in (opt.lstm_1, opt.lstm_2):
                w, b = cell.w_gates.numpy(), cell.b_gates.numpy()
                assert np.array_equal(b, w[0]) == same, (name, same)
    for synthetic in (True, False):
        keras.utils.set_random_seed(0)
        tied = build_optimizer("l2o_scale", synthetic, lstm_init="tied")
        keras.utils.set_random_seed(0)
        fresh = build_optimizer("l2o_scale", synthetic)
        assert tied.tied_init and not fresh.tied_init
        assert tied.batched_instances == fresh.batched_instances == synthetic
        for opt, same in ((tied, True), (fresh, False)):
            assert np.array_equal(opt.init1.numpy(), opt.init2.numpy()) == same
            assert np.array_equal(opt.w_scl.numpy(), opt.w_update.numpy()) == same
    assert lstm_init_options("l2o_swarm", L2OSwarm, "tied") == {
        "tied_lstm_init": True, "tied_attention_init": True}
    assert lstm_init_options("l2o_swarm", L2OSwarm, "sonnet") == {}

    class Untied:
        def __init__(self, hidden=3):
            self.hidden = hidden
    with pytest.raises(UserError, match="--lstm_init=tied"):
        lstm_init_options("untied", Untied, "tied")

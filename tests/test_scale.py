"""L2O-Scale: hierarchical state, instance independence, first-step math, save/load,
log-ratio meta-training, its command line."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from model_free.meta.meta_trainer import MetaTrainer
from model_free.rules.scale import L2OScale
from model_free.weights import pretrained
from open_l2o_tf.optimizees.quadratic import Quadratic
from tests.cli import run_ok

SHAPES = [(3, 4), (5,), (2, 2, 2)]


def _tensors(seed, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=s), tf.float32) for s in shapes]


def test_state_shapes_and_compiled_update():
    opt = L2OScale()
    params = _tensors(0)
    state = opt.initial_state(params)
    n = sum(int(np.prod(s)) for s in SHAPES)
    h0, h1, h2 = state[:3]
    assert (h0.shape, h1.shape, h2.shape) == ((n, 10), (3, 20), (1, 20))
    log_lr = state[5].numpy()
    assert np.all(log_lr >= np.log(1e-6) - 1e-4) and np.all(log_lr <= np.log(1e-2) + 1e-4)
    grads = _tensors(1)
    steps, new_state = opt.update(grads, state, params)
    assert [tuple(s.shape) for s in steps] == SHAPES
    assert tf.nest.map_structure(lambda t: tuple(t.shape), new_state) == \
        tf.nest.map_structure(lambda t: tuple(t.shape), state)
    steps2, _ = tf.function(opt.update)(grads, state, params)
    for a, b in zip(steps, steps2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    # batch-first tensors of 4 instances: one group per (tensor, row), one problem per row
    batched = L2OScale(batched_instances=True)
    st = batched.initial_state(_tensors(0, [(4, 6), (4, 2)]))
    assert (st[1].shape, st[2].shape) == ((8, 20), (4, 20))


def test_initial_states_and_readouts_drawn_independently():
    """The original draws each level's initial state and each readout (update, scale decay,
    input decay) with its own random op (hierarchical_rnn.py:234-237, :185-191, :251-253,
    :272-274); one shared unseeded Keras 3 initializer made init_level1 = init_level2,
    init_level0 their first 10 values, and the three readouts one vector.  tied_init
    (--lstm_init=tied) keeps that draw."""
    keras.utils.set_random_seed(0)
    opt = L2OScale()
    i0, i1, i2 = (v.numpy() for v in (opt.init0, opt.init1, opt.init2))
    assert not np.allclose(i1, i2) and not np.allclose(i0, i1[:10])
    assert not np.allclose(i0, i2[:10])
    assert all(np.abs(v).max() <= 1.0 and np.abs(v).max() > 0.5 for v in (i0, i1, i2))
    readouts = [v.numpy().ravel() for v in (opt.w_update, opt.w_scl, opt.w_inp)]
    for a in range(3):
        for b in range(a):
            assert not np.allclose(readouts[a], readouts[b]), (a, b)
    std = 0.5 / np.sqrt(10)          # hrnn_rnn_readout_scale / sqrt(level-0 size)
    pooled = np.concatenate(readouts)
    assert 0.6 * std < pooled.std() < 1.5 * std
    keras.utils.set_random_seed(0)
    tied = L2OScale(tied_init=True)
    assert tied.get_config()["tied_init"] is True
    np.testing.assert_array_equal(tied.init1.numpy(), tied.init2.numpy())
    np.testing.assert_array_equal(tied.init0.numpy(), tied.init1.numpy()[:10])
    np.testing.assert_array_equal(tied.w_scl.numpy(), tied.w_update.numpy())
    np.testing.assert_array_equal(tied.w_inp.numpy(), tied.w_update.numpy())


def test_first_step_is_a_normalised_gradient_step():
    """At the first step a_i = g, ms_i = g^2 + 1e-12, so s_i = asinh(sign(g)) for every i;
    with w_update = 0 the direction is sign(g) * asinh(1) * sum(c_i), normalised to unit
    RMS per tensor: the step is -exp(log_eta + offset) * sign(g)."""
    opt = L2OScale()
    opt.w_update.assign(tf.zeros_like(opt.w_update))
    params = _tensors(0)
    grads = _tensors(2)
    state = opt.initial_state(params)
    steps, _ = opt.update(grads, state, params)
    eta = np.exp(state[5].numpy()[:, 0] + float(opt.lr_offset.numpy()))
    expected = -eta * np.sign(np.concatenate([g.numpy().ravel() for g in grads]))
    got = np.concatenate([s.numpy().ravel() for s in steps])
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_instances_do_not_interact():
    """Changing instance 1's gradients leaves instance 0's steps unchanged (batched mode),
    over several steps (through all three RNN levels)."""
    opt = L2OScale(batched_instances=True)
    params = _tensors(0, [(2, 5), (2, 3)])
    base = _tensors(3, [(2, 5), (2, 3)])
    other = [tf.concat([g[:1], -3.0 * g[1:]], 0) for g in base]
    runs = []
    start = opt.initial_state(params)      # log-lr offsets are drawn afresh per call
    for grads in (base, other):
        state = start
        out = []
        for _ in range(3):
            steps, state = opt.update(grads, state, params)
            out.append([s.numpy() for s in steps])
        runs.append(out)
    for step_a, step_b in zip(*runs):
        for a, b in zip(step_a, step_b):
            np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-9)
            assert not np.allclose(a[1], b[1])


def test_save_and_load(tmp_path):
    opt = L2OScale(batched_instances=True, faithful_global=True)
    for v in opt.trainable_variables:
        v.assign(v + 0.01)
    path = str(tmp_path / "scale.npz")
    pretrained.save_optimizer(opt, path)
    name, loaded = pretrained.load_optimizer(path)
    assert name == "l2o_scale" and loaded.faithful_global and loaded.batched_instances
    params, grads = _tensors(0, [(3, 4)]), _tensors(1, [(3, 4)])
    state = opt.initial_state(params)
    a, _ = opt.update(grads, state, params)
    b, _ = loaded.update(grads, state, params)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)


def test_log_ratio_meta_training_lowers_the_meta_loss():
    opt = L2OScale(batched_instances=True)
    trainer = MetaTrainer(opt, Quadratic(dim=5, batch_size=16), unroll=20, truncation=5,
                          eval_every=10, eval_instances=1, progress=None,
                          meta_objective="log_ratio", clip_value=1e4,
                          meta_optimizer=keras.optimizers.RMSprop(3e-3, rho=0.9))
    losses = trainer.train(30)["episode_loss"]
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


def test_rastrigin_cli_with_l2o_scale(tmp_path):
    record = run_ok("run.rastrigin", "--optimizer=l2o_scale", "--preset=quick", "--steps=50",
                    "--test_instances=4", "--meta_episodes=4", "--unroll=40",
                    workdir=tmp_path)
    assert record["method"] == "l2o_scale" and len(record["curve"]) == 51
    assert record["train_steps"] == 4 * 40      # --unroll is the meta-training horizon
    assert record["paper"] == pytest.approx(6.0)
    assert np.isfinite(record["curve"][-1]) and record["curve"][-1] < record["curve"][0]
    assert (tmp_path / "ckpt" / "best.npz").exists()


def test_meta_training_is_xla_compiled_on_the_networks_only():
    """L2O-Scale's recipe compiles the truncation and the selection with XLA on the MNIST
    MLP (where it was measured 1.3x and 2.1x faster), not on the synthetic families (no
    faster, 40-60 s of compilation per trainer) nor on the ConvNet on a CPU (XLA's CPU
    convolutions)."""
    from model_free.meta.recipe import MetaRecipe, compiles
    from model_free.meta.selection import ModelSelection
    from model_free.meta.truncation import Truncations
    from open_l2o_tf.optimizees.networks import MnistConv, MnistMLP
    from open_l2o_tf.optimizees.rastrigin import Rastrigin
    images = np.zeros((8, 28, 28, 1), np.float32)
    labels = np.zeros(8, np.int32)
    opt = L2OScale(hidden0=2, hidden1=2, hidden2=2)
    recipe = L2OScale.meta_training(opt)
    mlp, conv = MnistMLP(images, labels, batch_size=4), MnistConv(images, labels, batch_size=4)
    assert compiles(recipe, mlp) and not compiles(recipe, Rastrigin(n=2, batch_size=2))
    assert compiles(recipe, conv) == any(
        d.device_type != "CPU" for d in tf.config.list_physical_devices())
    assert Truncations(opt, mlp, recipe, recipe.meta_optimizer).jit_compile
    assert ModelSelection(opt, mlp, recipe).jit_compile
    assert not Truncations(opt, Quadratic(dim=2, batch_size=2), recipe,
                           recipe.meta_optimizer).jit_compile
    assert not compiles(MetaRecipe(), mlp)          # the LSTM optimizers' default
    with pytest.raises(ValueError, match="jit_compile"):
        MetaRecipe(jit_compile="always")


def test_perf_floor_counts_the_scale_update_over_every_coordinate():
    """``run.perf --what=model_free``'s L2O-Scale setting: the FLOP floor counts the level-0
    GRU over all coordinates, forward ``T`` times and backward with ``dX`` and ``dW``."""
    from model_free.measure.perf_meta import _setting, truncation_products  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.optimizees.networks import MnistMLP  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(0)
    mlp = MnistMLP(rng.random((32, 6, 6, 1), np.float32), rng.integers(0, 10, 32),
                   "sigmoid", batch_size=8)
    trainer = _setting("l2o_scale_mnist_mlp", mlp, unroll=20)
    assert isinstance(trainer.opt, L2OScale) and trainer.eval_every == 100
    params = mlp.init_params(tf.constant([0, 1]))
    n = sum(int(np.prod(p.shape)) for p in params)
    counts = truncation_products(trainer, params)
    f0, h0 = trainer.opt.gru0.input_dim + trainer.opt.hidden0, trainer.opt.hidden0
    T = trainer.truncation
    assert counts["optimizer updates"][(n, f0, 2 * h0)] == T
    assert counts["BPTT backward"][(f0, n, 2 * h0)] == T          # dW
    assert counts["BPTT backward"][(n, 2 * h0, f0)] == T          # dX
    assert counts["optimizee gradients"][(8, 36, mlp.shapes[0][1])] == T + 1

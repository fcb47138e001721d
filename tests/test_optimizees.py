"""Optimizees: loss values against numpy, gradients, seeded sampling."""
import numpy as np
import pytest
import tensorflow as tf

from open_l2o_tf.errors import UserError
from open_l2o_tf.optimizees import make_optimizee, minimax
from open_l2o_tf.optimizees.lasso import Lasso
from open_l2o_tf.optimizees.networks import MnistConv, MnistMLP
from open_l2o_tf.optimizees.quadratic import Quadratic
from open_l2o_tf.optimizees.rastrigin import Rastrigin


def test_quadratic_value_and_seed():
    q = Quadratic(dim=3, batch_size=4)
    inst = q.sample_instance(1)
    x = q.init_params(2, inst)
    W, y, xv = inst["W"].numpy(), inst["y"].numpy(), x[0].numpy()
    expect = np.sum((np.einsum("bij,bj->bi", W, xv) - y) ** 2, axis=1)
    np.testing.assert_allclose(q.instance_losses(x, inst), expect, rtol=1e-5)
    assert np.array_equal(q.sample_instance(1)["W"], inst["W"])
    assert not np.array_equal(q.sample_instance(2)["W"], inst["W"])
    loss, grads = q.loss_and_grads(x, inst)
    assert grads[0].shape == (4, 3) and np.isfinite(float(loss))


def test_lasso_from_data_and_generator():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(5, 10)).astype(np.float32)
    pool = rng.normal(size=(50, 5)).astype(np.float32)
    lasso = Lasso.from_data(A, pool, lam=0.005, batch_size=8)
    inst = lasso.sample_instance(3)
    x = [tf.constant(rng.normal(size=(8, 10)), tf.float32)]
    y = inst["y"].numpy()
    expect = 0.5 * np.sum((x[0].numpy() @ A.T - y) ** 2, 1) + 0.005 * np.abs(x[0].numpy()).sum(1)
    np.testing.assert_allclose(lasso.instance_losses(x, inst), expect, rtol=1e-5)
    assert lasso.init_params(0, inst)[0].numpy().sum() == 0.0
    own = Lasso(5, 10, batch_size=4).sample_instance(0)
    assert own["W"].shape == (4, 5, 10) and own["W"].numpy().min() >= 0.0


def test_lasso_fixed_batch_is_the_originals_lasso_fixed():
    """fixed=True: every episode sees the pool's first rows (problems.lasso_fixed's one
    batch) and x_0 ~ N(0, 0.01^2); the default draws new rows per seed."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=(5, 10)).astype(np.float32)
    pool = rng.normal(size=(40, 5)).astype(np.float32)
    fixed = Lasso.from_data(A, pool[:8], batch_size=8, init_scale=0.01, fixed=True)
    for seed in (0, 1, 7):
        np.testing.assert_array_equal(fixed.sample_instance(seed)["y"], pool[:8])
    x0 = fixed.init_params(3, fixed.sample_instance(3))[0].numpy()
    assert 0.005 < x0.std() < 0.02
    fresh = Lasso.from_data(A, pool, batch_size=8)
    assert not np.array_equal(fresh.sample_instance(0)["y"], fresh.sample_instance(1)["y"])
    with pytest.raises(ValueError, match="batch_size"):
        Lasso.from_data(A, pool[:4], batch_size=8, fixed=True)


def test_rastrigin_values_and_bound():
    r = Rastrigin(n=2, batch_size=64)
    inst = r.sample_instance(0)
    x = r.init_params(1, inst)
    A, b, c, xv = (inst[k].numpy() for k in "Abc"), None, None, None
    A, b, c = inst["A"].numpy(), inst["b"].numpy(), inst["c"].numpy()
    xv = x[0].numpy()
    expect = (0.5 * np.sum((np.einsum("bij,bj->bi", A, xv) - b) ** 2, 1)
              - 10 * np.sum(c * np.cos(2 * np.pi * xv), 1) + 20)
    values = r.instance_losses(x, inst).numpy()
    np.testing.assert_allclose(values, expect, rtol=1e-4)
    assert np.all(values >= r.lower_bound(inst).numpy() - 1e-4)
    # at x = 0 with b = 0: f = 10 (n - sum c)
    zero = {"A": inst["A"], "b": tf.zeros_like(inst["b"]), "c": inst["c"]}
    np.testing.assert_allclose(r.instance_losses([tf.zeros([64, 2])], zero),
                               10 * (2 - c.sum(1)), rtol=1e-4)
    tiled = r.tile_starts(inst, 10)
    assert tiled["A"].shape == (640, 2, 2)
    assert 15 < float(np.mean(values)) < 35        # E f(x0) = 23 for n = 2


def _toy_images(num=256, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, num).astype(np.int32)
    images = rng.random((num, 28, 28, 1)).astype(np.float32) * 0.1
    images[np.arange(num), labels, :, 0] += 1.0      # a learnable pattern
    return images, labels


def test_mlp_loss_at_init_and_sgd_decreases():
    images, labels = _toy_images()
    mlp = MnistMLP(images, labels, "relu", batch_size=64)
    params = mlp.init_params(0)
    assert [tuple(p.shape) for p in params] == [(784, 20), (20,), (20, 10), (10,)]
    batch = mlp.sample_batch(1)
    assert float(mlp.loss(params, {}, batch)) == pytest.approx(np.log(10), abs=0.02)
    first = float(mlp.loss(params, {}, batch))
    for k in range(60):
        loss, grads = mlp.loss_and_grads(params, {}, mlp.sample_batch(k))
        params = [p - 0.5 * g for p, g in zip(params, grads)]
    assert float(mlp.loss(params, {}, batch)) < first - 0.5


def test_convnet_shapes_and_loss():
    images, labels = _toy_images(64)
    conv = MnistConv(images, labels, batch_size=16)
    params = conv.init_params(0)
    assert params[8].shape == (512, 10)
    loss = float(conv.loss(params, {}, conv.sample_batch(0)))
    assert np.isfinite(loss) and 1.5 < loss < 3.0


def test_minimax_and_factory_errors():
    s = minimax.Saddle(dim=2, batch_size=3)
    inst = s.sample_instance(0)
    x, y = s.init_params(1, inst)
    assert np.all(np.abs(x.numpy()) <= 0.5) and np.all(np.abs(y.numpy()) <= 0.5)
    a, b = inst["a"].numpy(), inst["b"].numpy()
    assert np.all((a >= 0.9) & (a <= 1.0)) and np.all((b >= 0.9) & (b <= 1.0))
    np.testing.assert_allclose(s.instance_losses([x, y], inst),
                               np.sum(a * x.numpy() ** 2 - b * y.numpy() ** 2, 1), rtol=1e-5)
    np.testing.assert_allclose(s.saddle_distance([x, y], inst),
                               np.abs(x.numpy()).sum(1) ** 2 + np.abs(y.numpy()).sum(1) ** 2,
                               rtol=1e-5)
    seesaw = minimax.Seesaw(batch_size=4, ab_range=3)
    si = seesaw.sample_instance(0)
    u = tf.constant(2.0 / si["a"].numpy())   # a saddle point u = k/a with k = 2, v = 0
    assert np.allclose(seesaw.saddle_distance([u, tf.zeros_like(u)], si), 0.0, atol=1e-8)
    g = minimax.MatrixGame(dim=5, batch_size=3, keep_probability=0.5)
    ig = g.sample_instance(0)
    m = ig["M"].numpy()
    assert np.all((m == 0) | ((m >= 0.5) & (m <= 1.0))) and 0 < np.mean(m == 0) < 1
    assert g.instance_losses(g.init_params(0, ig), ig).shape == (3,)
    with pytest.raises(UserError, match="ab_range"):
        minimax.Saddle(ab_range=9)
    with pytest.raises(UserError, match="unknown optimizee"):
        make_optimizee("nope")
    with pytest.raises(UserError, match="activation"):
        MnistMLP(*_toy_images(8), activation="tanh")


def test_use_xla_leaves_xla_off_for_convnets_on_cpu():
    """XLA's CPU convolutions are 20-50x slower than TensorFlow's kernels on the ConvNet:
    on a CPU-only machine the convnets run without XLA, the MLPs (and everything else)
    with it, and ``jit_compile=False`` always wins."""
    import tensorflow as tf
    from open_l2o_tf.optimizees import use_xla
    from open_l2o_tf.optimizees.networks import MnistConv, MnistMLP
    rng = np.random.default_rng(0)
    images = rng.random((4, 28, 28, 1), np.float32)
    labels = np.arange(4, dtype=np.int32)
    conv, mlp = MnistConv(images, labels), MnistMLP(images, labels)
    accelerator = any(d.device_type != "CPU" for d in tf.config.list_physical_devices())
    assert use_xla(conv) is accelerator
    assert use_xla(mlp) is True
    assert use_xla(conv, False) is False and use_xla(mlp, False) is False


def test_scale_convnet_is_l2o_scales_test_network():
    """mnist_conv_scale: L2O-Scale's ConvNet(mode="test"): six tensors all N(0, 0.01^2),
    batch normalisation in inference mode (a fresh Keras/TF1 layer: moving mean 0, variance
    1, gamma 1, beta 0, epsilon 1e-3, not optimised), ReLU on the logits."""
    import keras  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(4, 28, 28, 1)).astype(np.float32)
    net = make_optimizee("mnist_conv_scale", images=images, labels=np.arange(4))
    params = net.init_params([3, 1])
    assert [tuple(p.shape) for p in params] == [(3, 3, 1, 16), (16,), (5, 5, 16, 32), (32,),
                                                (512, 10), (10,)]
    assert 0.005 < float(np.std(params[1])) < 0.02      # biases drawn too
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    h = tf.constant(images)
    for w, b in ((params[0], params[1]), (params[2], params[3])):
        h = tf.nn.conv2d(h, w, 1, "VALID") + b
        h = tf.nn.max_pool2d(tf.nn.relu(bn(h, training=False)), 2, 2, "VALID")
        bn = keras.layers.BatchNormalization(epsilon=1e-3)
    expected = tf.nn.relu(tf.reshape(h, [4, -1]) @ params[4] + params[5])
    np.testing.assert_allclose(net.logits(params, images), expected, rtol=1e-5, atol=1e-7)


def test_convnet_with_fixed_batch_norm_is_the_original_learned_optimizers_network():
    """bn_affine=False: the six conv/FC tensors the original's meta.py optimises (its
    tf.layers gamma/beta stay 1 / 0); the same logits as the full network with gamma = 1,
    beta = 0 put back."""
    images = np.random.RandomState(0).rand(32, 28, 28, 1).astype(np.float32)
    labels = np.arange(32) % 10
    full = MnistConv(images, labels, batch_size=16)
    fixed = MnistConv(images, labels, batch_size=16, bn_affine=False)
    assert len(full.shapes) == 10 and len(fixed.shapes) == 6
    assert fixed.shapes == tuple(full.shapes[i] for i in (0, 1, 4, 5, 8, 9))
    p = fixed.init_params(tf.constant([1, 2]))
    assert [tuple(v.shape) for v in p] == list(fixed.shapes)
    q = [p[0], p[1], tf.ones([16]), tf.zeros([16]), p[2], p[3], tf.ones([32]),
         tf.zeros([32]), p[4], p[5]]
    x = tf.constant(images[:16])
    np.testing.assert_allclose(fixed.logits(p, x).numpy(), full.logits(q, x).numpy(),
                               atol=1e-6)
    # a changed gamma moves the full network but is not a parameter of the fixed one
    q[2] = 2.0 * q[2]
    assert np.abs(full.logits(q, x).numpy() - fixed.logits(p, x).numpy()).max() > 1e-4

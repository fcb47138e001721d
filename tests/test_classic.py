"""Tests of the classic baselines (open_l2o_tf.classic)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from open_l2o_tf import classic, metrics
from open_l2o_tf.errors import UserError

LAM = 0.005


def _lasso_problem(m, n, batch, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(0.0, 1.0 / np.sqrt(m), (m, n))
    A /= np.linalg.norm(A, axis=0)
    x = (rng.random((batch, n)) < 0.1) * rng.normal(size=(batch, n))
    return A.astype(np.float32), (x @ A.T).astype(np.float32)


def _rastrigin(num, n=2, seed=0, alpha=10.0):
    """Inline batched Rastrigin: 1/2||Ax-b||^2 - alpha c^T cos(2 pi x) + alpha n."""
    rng = np.random.default_rng(seed)
    A = tf.constant(rng.normal(size=(num, n, n)), tf.float32)
    b = tf.constant(rng.normal(size=(num, n)), tf.float32)
    c = tf.constant(rng.normal(size=(num, n)), tf.float32)
    x0 = tf.constant(rng.normal(size=(num, n)), tf.float32)

    def loss(params):
        x = params[0] if isinstance(params, (list, tuple)) else params
        r = tf.einsum("bij,bj->bi", A, x) - b
        return (0.5 * tf.reduce_sum(r * r, -1)
                - alpha * tf.reduce_sum(c * tf.cos(2 * np.pi * x), -1) + alpha * n)

    lower = alpha * (n - np.abs(c.numpy()).sum(-1))
    return loss, x0, lower


def test_fista_reaches_fstar_and_beats_ista():
    A, y = _lasso_problem(25, 50, 256)
    f_star = classic.lasso_fstar(A, y, LAM)
    x, curve = classic.fista(A, y, LAM, 1000)
    _, curve_ista = classic.ista(A, y, LAM, 1000)
    assert curve.shape == (1001, 256) and x.shape == (256, 50)
    np.testing.assert_allclose(curve[0].numpy(), 0.5 * np.sum(y ** 2, -1), rtol=1e-5)
    r_fista = float(metrics.relative_loss(curve, f_star)[-1])
    r_ista = float(metrics.relative_loss(curve_ista, f_star)[-1])
    assert 0 <= r_fista < 1e-4 or abs(r_fista) < 1e-5
    assert r_ista > 10 * max(r_fista, 1e-7)
    # The curve holds the Lasso objective of the returned iterate.
    np.testing.assert_allclose(curve[-1].numpy(), metrics.lasso_objective(A, x, y, LAM).numpy(),
                               rtol=1e-5)


def test_ista_batched_A_matches_shared_and_fista_from_continues():
    A, y = _lasso_problem(5, 10, 32, seed=3)
    Ab = np.stack([A] * 32)
    x_shared, c_shared = classic.ista(A, y, LAM, 50)
    x_batched, c_batched = classic.ista(Ab, y, LAM, 50)
    np.testing.assert_allclose(x_batched.numpy(), x_shared.numpy(), atol=1e-5)
    np.testing.assert_allclose(classic.lipschitz_constant(Ab).numpy()[:, 0],
                               np.linalg.norm(A, 2) ** 2 * np.ones(32), rtol=1e-5)
    _, c_from = classic.fista_from(A, y, LAM, x_shared, 20)
    np.testing.assert_allclose(c_from[0].numpy(), c_shared[-1].numpy(), rtol=1e-5)
    assert np.mean(c_from[-1].numpy()) < np.mean(c_shared[-1].numpy())
    with pytest.raises(UserError):
        classic.ista(A, y[:, :3], LAM, 5)


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_adam_rmsprop_match_keras(name):
    rng = np.random.default_rng(0)
    W = rng.normal(size=(4, 6, 6)).astype(np.float32)
    x0 = rng.normal(size=(4, 6)).astype(np.float32)
    w_bias = rng.normal(size=(3,)).astype(np.float32)

    def per_instance(x, bias):
        return tf.reduce_sum(tf.square(tf.einsum("bij,bj->bi", W, x)), -1) + tf.reduce_sum(
            tf.square(bias - 1.0))

    if name == "adam":
        ours = classic.adam(0.05, beta1=0.8, beta2=0.99, eps=1e-7)
        ref = keras.optimizers.Adam(0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-7)
    else:
        ours = classic.rmsprop(0.01, decay=0.8, eps=1e-7)
        ref = keras.optimizers.RMSprop(0.01, rho=0.8, epsilon=1e-7)
    variables = [tf.Variable(x0), tf.Variable(w_bias)]
    params = [tf.constant(x0), tf.constant(w_bias)]
    state = ours.init(params)
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(per_instance(*variables))
        ref.apply_gradients(zip(tape.gradient(loss, variables), variables))
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = tf.reduce_sum(per_instance(*params))
        updates, state = ours.update(tape.gradient(loss, params), state, params)
        params = classic.apply_updates(params, updates)
    for p, v in zip(params, variables):
        np.testing.assert_allclose(p.numpy(), v.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(params[0].numpy(), x0, atol=1e-3)


def _quadratic():
    rng = np.random.default_rng(2)
    W = tf.constant(rng.normal(size=(8, 5, 5)) / np.sqrt(5), tf.float32)
    x0 = tf.constant(rng.normal(size=(8, 5)), tf.float32)

    def loss(params, batch=None):
        del batch
        return tf.reduce_sum(tf.square(tf.einsum("bij,bj->bi", W, params[0])), -1)
    return loss, x0


@pytest.mark.parametrize("transform", [classic.gd(0.05), classic.sgd(0.05, momentum=0.5),
                                       classic.chain(classic.identity(), classic.scale(-0.05))])
def test_gd_sgd_decrease_quadratic(transform):
    loss, x0 = _quadratic()
    final, curve = classic.run_optimizer(transform, loss, [x0], 100)
    assert curve.shape == (101, 8)
    assert np.all(curve[-1].numpy() < 0.5 * curve[0].numpy())
    np.testing.assert_allclose(curve[-1].numpy(), loss(final).numpy(), rtol=1e-5)


def test_run_optimizer_traces_once_and_uses_fresh_batches():
    _, x0 = _quadratic()
    calls = {"loss": 0, "batch": 0}

    def loss(params, batch):
        calls["loss"] += 1
        return tf.reduce_sum(tf.square(params[0] - batch), -1)

    def batch_fn(step):
        calls["batch"] += 1
        return tf.random.stateless_normal([8, 5], classic.step_seed(step, 7)) * 0.1

    _, curve = classic.run_optimizer(classic.gd(0.1), loss, [x0], 5, batch_fn=batch_fn)
    traced = dict(calls)
    _, curve_long = classic.run_optimizer(classic.gd(0.1), loss, [x0], 60, batch_fn=batch_fn)
    assert curve.shape == (6, 8) and curve_long.shape == (61, 8)
    assert calls["loss"] == 2 * traced["loss"] and calls["batch"] == 2 * traced["batch"]
    assert traced["loss"] <= 6  # a few traces, independent of num_steps
    # Fresh minibatches: the loss does not converge to 0 (noise floor) but decreases.
    assert np.all(curve_long[-1].numpy() < curve_long[0].numpy())
    assert np.all(curve_long[-1].numpy() > 1e-4)
    _, curve_post = classic.run_optimizer(classic.gd(0.1), loss, [x0], 5, batch_fn=batch_fn,
                                          record="post")
    np.testing.assert_allclose(curve_post[0].numpy(), curve[0].numpy(), rtol=1e-6)
    with pytest.raises(UserError):
        classic.run_optimizer(classic.gd(0.1), loss, [x0], 0)


def test_line_search_decreases_rastrigin_and_never_increases():
    loss, x0, lower = _rastrigin(64)
    _, curve_gd = classic.gd_line_search(loss, [x0], 60)
    _, curve_nag = classic.nag_line_search(loss, [x0], 60)
    for curve in (curve_gd.numpy(), curve_nag.numpy()):
        assert curve.shape == (61, 64)
        assert np.all(np.diff(curve, axis=0) <= 1e-5 * (1 + np.abs(curve[:-1])))
        assert curve[-1].mean() < curve[0].mean() - 5.0
        assert np.all(curve[-1] >= lower - 1e-3)


def test_armijo_rejects_when_no_decrease_possible():
    # At a local maximum with a tiny bump the step cannot satisfy Armijo from a huge start.
    loss = lambda ps: tf.reduce_sum(tf.square(ps[0]), -1)  # noqa: E731
    x = [tf.constant([[1.0, 0.0], [0.0, 0.0]])]
    fx = loss(x)
    g = [2.0 * x[0]]
    x_new, f_new, step, accepted = classic.armijo_step(loss, x, fx, g, 10.0, 0.5, 1e-4, 4)
    # instance 0: trials 10, 5, 2.5, 1.25 all overshoot (|1 - 2s| >= 1.5) -> rejected
    assert not bool(accepted[0]) and float(step[0]) == 0.0
    np.testing.assert_allclose(x_new[0].numpy()[0], [1.0, 0.0])
    assert not bool(accepted[1])  # zero gradient: nothing to do
    _, _, step, accepted = classic.armijo_step(loss, x, fx, g, 10.0, 0.5, 1e-4, 6)
    assert bool(accepted[0]) and float(step[0]) == pytest.approx(0.625)
    assert float(f_new[0]) <= float(fx[0])


def test_run_and_inspect_beats_gd_and_respects_lower_bound():
    loss, x0, lower = _rastrigin(12, seed=5)
    _, curve_gd = classic.gd_line_search(loss, [x0], 150)
    x, final, curve = classic.run_and_inspect(loss, [x0], num_iterations=150, radius=1.4,
                                              delta=0.2, polish_steps=2)
    final = final.numpy()
    assert curve.shape == (151, 12)
    np.testing.assert_allclose(final, loss(x).numpy(), rtol=1e-5)
    np.testing.assert_allclose(curve[-1].numpy(), final, rtol=1e-6)
    assert np.all(final >= lower - 1e-3)
    assert final.mean() < curve_gd[-1].numpy().mean() - 0.3


def test_run_and_inspect_in_chunks_reports_progress_and_gives_the_same_bits():
    """The oracle's loop runs as compiled chunks with a progress line after each: the curve
    is bit-identical to one compiled call, and a chunk length that does not divide the
    iterations ends with a shorter chunk."""
    loss, x0, _ = _rastrigin(6, seed=3)
    lines = []
    _, final_a, chunked = classic.run_and_inspect(loss, [x0], num_iterations=40, radius=1.4,
                                                  polish_steps=1, chunk=15,
                                                  progress=lines.append)
    _, final_b, whole = classic.run_and_inspect(loss, [x0], num_iterations=40, radius=1.4,
                                                polish_steps=1, chunk=None)
    np.testing.assert_array_equal(chunked.numpy(), whole.numpy())
    np.testing.assert_array_equal(final_a.numpy(), final_b.numpy())
    assert [line.split()[2] for line in lines] == ["15/40", "30/40", "40/40"]
    assert float(lines[-1].split()[5]) == pytest.approx(float(final_a.numpy().mean()),
                                                        abs=1e-4)


def _rastrigin_rows(num, n, seed, quantum=None, alpha=10.0):
    """``(loss, rows_loss, x0)``: inline Rastrigin for the whole batch and for given rows;
    with ``quantum`` the values are rounded to multiples of it (straight-through gradient),
    so that inspection samples tie."""
    rng = np.random.default_rng(seed)
    A, b, c, x0 = (tf.constant(rng.normal(size=shape), tf.float32) for shape in
                   [(num, n, n), (num, n), (num, n), (num, n)])

    def value(x, A, b, c):
        r = tf.einsum("bij,bj->bi", A, x) - b
        f = (0.5 * tf.reduce_sum(r * r, -1)
             - alpha * tf.reduce_sum(c * tf.cos(2 * np.pi * x), -1) + alpha * n)
        if quantum is None:
            return f
        return f + tf.stop_gradient(tf.round(f / quantum) * quantum - f)

    def loss(params):
        return value(params[0], A, b, c)

    def rows_loss(rows):
        data = [tf.gather(t, rows) for t in (A, b, c)]
        return lambda params: value(params[0], *data)

    return loss, rows_loss, x0


@pytest.mark.parametrize("n, quantum", [(2, None), (2, 2.0), (5, 1.0)])
def test_run_and_inspect_batched_inspection_gives_the_loops_bits(n, quantum):
    """The batched inspection (only the instances that need it, ``group`` at a time, their
    samples along the batch) gives the sample-by-sample loop's curve bit for bit, also when
    the samples' losses tie (``quantum``: rounded losses; the first best sample must win)
    and with the +-e_i directions (n = 5)."""
    loss, rows_loss, x0 = _rastrigin_rows(11, n, seed=7, quantum=quantum)
    kwargs = dict(num_iterations=60, radius=1.0, delta=0.25, polish_steps=1, max_run=15,
                  rows_loss_fn=rows_loss, seed=3)
    _, final_loop, loop = classic.run_and_inspect(loss, [x0], inspection="loop", **kwargs)
    _, final_fast, fast = classic.run_and_inspect(loss, [x0], group=3, **kwargs)
    np.testing.assert_array_equal(fast.numpy(), loop.numpy())
    np.testing.assert_array_equal(final_fast.numpy(), final_loop.numpy())
    assert loop[-1].numpy().mean() < loop[0].numpy().mean() - 5.0


def test_first_best_is_the_sequential_selection():
    """Per column: the first of the least finite losses, taken when strictly below f(x)."""
    from open_l2o_tf.classic.oracle import first_best
    nan, inf = float("nan"), float("inf")
    fy = tf.constant([[3.0, nan, 5.0, 1.0, inf],
                      [2.0, 4.0, 5.0, 1.0, -inf],
                      [2.0, 4.0, 4.0, 0.5, nan],
                      [7.0, 4.0, 5.0, 1.0, nan]])
    fx = tf.constant([2.5, 4.0, 5.0, 0.5, 1.0])
    index, least, better = first_best(fy, fx)
    np.testing.assert_array_equal(index.numpy()[:4], [1, 1, 2, 2])
    np.testing.assert_array_equal(least.numpy(), [2.0, 4.0, 4.0, 0.5, inf])
    np.testing.assert_array_equal(better.numpy(), [True, False, True, False, False])


def test_run_and_inspect_batched_inspection_needs_rows_loss():
    loss, _, x0 = _rastrigin_rows(4, 2, seed=0)
    with pytest.raises(UserError, match="rows_loss_fn"):
        classic.run_and_inspect(loss, [x0], num_iterations=5, inspection="batched")
    with pytest.raises(UserError, match="inspection"):
        classic.run_and_inspect(loss, [x0], num_iterations=5, inspection="fast")


@pytest.mark.parametrize("form", ["keras", "textbook"])
def test_one_adam_multipliers_and_forms(form):
    """The one Adam (classic baseline, progressive trainer, imitation teacher): per-tensor
    gradient and step multipliers against a float64 NumPy reference; a None gradient
    leaves its tensor and slots alone."""
    from open_l2o_tf.classic import first_order
    rng = np.random.default_rng(1)
    params = [tf.constant(rng.normal(size=(3, 4)).astype(np.float32)),
              tf.constant(rng.normal(size=(5,)).astype(np.float32)),
              tf.constant(rng.normal(size=(2,)).astype(np.float32))]
    c, s, lr, b1, b2, eps = [0.3, 1.0, 1.0], [1.0, 0.09, 1.0], 0.01, 0.9, 0.999, 1e-7
    adam = first_order.adam(lr, b1, b2, eps, grad_multipliers=c, step_multipliers=s,
                            form=form)
    state = adam.init(params)
    ref_m = [np.zeros(p.shape) for p in params[:2]]
    ref_v = [np.zeros(p.shape) for p in params[:2]]
    for t in range(1, 6):
        grads = [tf.constant(rng.normal(size=p.shape).astype(np.float32)) for p in params[:2]]
        updates, state = adam.update(grads + [None], state)
        assert updates[2] is None
        np.testing.assert_array_equal(state[2][2].numpy(), 0.0)
        for j in range(2):
            g = c[j] * grads[j].numpy().astype(np.float64)
            ref_m[j] = b1 * ref_m[j] + (1 - b1) * g
            ref_v[j] = b2 * ref_v[j] + (1 - b2) * g * g
            alpha = s[j] * lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            np.testing.assert_allclose(updates[j].numpy(),
                                       -alpha * ref_m[j] / (np.sqrt(ref_v[j]) + eps),
                                       rtol=2e-4, atol=1e-9)
    assert int(state[0]) == 5


def test_run_optimizer_seed_is_a_loop_argument():
    """Runs that differ only in ``seed`` share one traced loop and see other minibatches;
    the same seed gives the same curve."""
    _, x0 = _quadratic()
    calls = {"loss": 0}

    def loss(params, batch):
        calls["loss"] += 1
        return tf.reduce_sum(tf.square(params[0] - batch), -1)

    def batch_fn(step, seed):
        return tf.random.stateless_normal([8, 5], tf.stack([seed, step])) * 0.1

    gd = classic.gd(0.1)
    curves = [classic.run_optimizer(gd, loss, [x0], 4, batch_fn=batch_fn, seed=s,
                                    jit_compile=False)[1].numpy() for s in (3, 4, 3)]
    assert calls["loss"] <= 3               # one trace (3 loss calls), not one per seed
    np.testing.assert_array_equal(curves[0], curves[2])
    assert not np.allclose(curves[0], curves[1])

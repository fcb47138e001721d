"""The unrolled models: shapes, variables, equivalence with ISTA/FISTA, support selection,
serialisation."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from model_based.factory import build_model
from model_based.shrinkage import shrink_ss, ss_keep_count, ss_percent
from open_l2o_tf import registry
from open_l2o_tf.classic import ista_fista
from open_l2o_tf.data import alista_weight, sparse_recovery
from open_l2o_tf.errors import UserError

M, N, B, T = 16, 32, 8, 4


@pytest.fixture(scope="module")
def problem():
    A = sparse_recovery.gaussian_matrix(M, N, 1)
    W = alista_weight.analytic_weight(A)
    y, x = sparse_recovery.sample_measurements(A, 2, B)
    return A, W, y.numpy(), x.numpy()


ALL = registry.names("model")


@pytest.mark.parametrize("name", ALL)
def test_outputs_and_variables(problem, name):
    A, W, y, _ = problem
    model = build_model(name, A, W, T)
    outs = model(y)
    assert len(outs) == T and all(o.shape == (B, N) for o in outs)
    assert len(model(y, num_layers=2)) == 2
    per_layer = [model.layer_variables(t) for t in range(T)]
    assert all(per_layer)
    ids = [id(v) for vs in per_layer for v in vs]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(v) for v in model.trainable_variables}
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(y)[-1]))
    grads = tape.gradient(loss, model.layer_variables(T - 1))
    assert all(g is not None for g in grads)


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip_and_keras_file(problem, name, tmp_path):
    A, W, y, _ = problem
    model = build_model(name, A, W, T)
    for v in model.trainable_variables:   # move off the initialisation
        v.assign(v * 1.01)
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(y)[-1], model(y)[-1], rtol=1e-5, atol=1e-6)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(y)[-1], model(y)[-1], rtol=1e-5, atol=1e-6)


def _ista_steps(A, y, lam, step, k, accelerated=False):
    solver = ista_fista.fista if accelerated else ista_fista.ista
    x, _ = solver(A, y, lam, k, step=step)
    return x.numpy()


@pytest.mark.parametrize("name,kwargs", [("lista", {}), ("lista_cp", {"faithful_init": False}),
                                         ("step_lista", {})])
def test_initialisation_is_ista(problem, name, kwargs):
    A, W, y, _ = problem
    model = registry.get("model", name)(A, num_layers=T, **({"lam": 0.005} if name ==
                                                             "step_lista" else {}), **kwargs)
    lam = model.lam
    step = 1.0 / model.L
    for k in (1, T):
        np.testing.assert_allclose(model(y, num_layers=k)[-1],
                                   _ista_steps(A, y, lam, step, k), rtol=1e-4, atol=1e-5)


def test_lfista_initialisation_is_fista_with_shifted_momentum(problem):
    A, W, y, _ = problem
    model = registry.get("model", "lfista")(A, num_layers=T)
    step, theta = 1.0 / model.L, model.theta_init
    x_prev = np.zeros((B, N), np.float32)
    x = ista_fista.soft_threshold(step * (y @ A), theta).numpy()
    from model_based.lfista import momentum_sequence
    mom = momentum_sequence(T)
    for t in range(1, T):
        z = x + mom[t] * (x - x_prev)
        x_prev, x = x, ista_fista.soft_threshold(z - step * (z @ A.T - y) @ A, theta).numpy()
    np.testing.assert_allclose(model(y)[-1], x, rtol=1e-4, atol=1e-5)


def _ista_ss(A, y, model, k):
    """k iterations of ISTA with support selection: x <- shrink_ss(x + A^T(y - Ax)/L)."""
    x = np.zeros((y.shape[0], A.shape[1]), np.float32)
    for t in range(k):
        z = x + ((y - x @ A.T) @ A) / model.L
        x = shrink_ss(tf.constant(z, tf.float32), model.theta_init, model.keep[t])[0].numpy()
    return x


def test_glista_with_closed_gates_is_ista_with_support_selection(problem):
    A, W, y, _ = problem
    model = build_model("glista", A, W, T, alti=0.0)
    np.testing.assert_allclose(model(y)[-1], _ista_ss(A, y, model, T), rtol=1e-4, atol=1e-5)
    # the original's alpha = beta = 5 opens the gates: a different map at initialisation
    model5 = build_model("glista", A, W, T)
    assert np.max(np.abs(model5(y)[-1] - _ista_ss(A, y, model5, T))) > 1e-2


def test_support_selection_counts():
    n = 128
    ks = [ss_keep_count(n, ss_percent(t)) for t in range(16)]
    assert ks == [2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 17, 17, 17, 17, 17]
    assert [ss_keep_count(512, ss_percent(t)) for t in (0, 9, 15)] == [6, 61, 66]
    z = tf.constant(np.arange(1, n + 1, dtype=np.float32)[None, :] * np.array([[1.0], [-1.0]],
                                                                               np.float32))
    out, c = shrink_ss(z, 0.5, 5)
    passed = np.sum(out.numpy() == z.numpy(), axis=1)
    assert list(passed) == [5, 5]
    assert np.allclose(out.numpy()[0, :n - 5], np.arange(1, n - 4) - 0.5)
    assert np.sum(1 - c.numpy(), axis=1).tolist() == [5, 5]
    out_big_theta, _ = shrink_ss(z, 1000.0, 5)   # nothing above theta: nothing passes
    assert np.all(out_big_theta.numpy() == 0)


def test_no_gradient_through_the_mask():
    z = tf.Variable([[3.0, -2.0, 0.1, 5.0]])
    with tf.GradientTape() as tape:
        out, _ = shrink_ss(z, 0.5, 1)
        loss = tf.reduce_sum(out)
    g = tape.gradient(loss, z).numpy()
    assert np.allclose(g, [[1.0, 1.0, 0.0, 1.0]])


def test_bad_inputs(problem):
    A, W, y, _ = problem
    model = build_model("lista", A, W, T)
    with pytest.raises(UserError, match="y must have shape"):
        model(np.zeros((2, M + 1), np.float32))
    with pytest.raises(UserError, match="num_layers"):
        model(y, num_layers=T + 1)
    with pytest.raises(UserError, match="W"):
        build_model("alista", A, None, T)
    with pytest.raises(UserError, match="unknown model"):
        build_model("nope", A, W, T)


def test_glista_gain_uses_d_times_abs_x_as_the_original():
    """relu gate 1 + alpha relu(1 - relu(D |x|)): a negative D gives the constant 1 + alpha
    and no gradient for D (|D x| would give 1 + alpha relu(1 - |D x|))."""
    A = np.eye(2, 4, dtype=np.float32)
    model = build_model("glista", A, None, 2, alti=2.0)
    model.D[1].assign([-0.5, 0.5, 2.0, 1.0])
    x = tf.constant([[1.0, -1.0, 0.25, -3.0]])
    with tf.GradientTape() as tape:
        g = model._gain(1, x)
    np.testing.assert_allclose(g.numpy(), [[3.0, 2.0, 2.0, 1.0]])
    grad = tape.gradient(g, model.D[1]).numpy()
    assert grad[0] == 0.0 and grad[1] != 0.0


def test_kth_on_host_matches_top_k():
    from model_based import shrinkage
    z = tf.random.stateless_normal([64, 200], [1, 2])
    plain = tf.function(lambda v: shrinkage.support_mask(v, 0.3, 17))
    with shrinkage.kth_on_host():
        host = tf.function(lambda v: shrinkage.support_mask(v, 0.3, 17))
        out = host(z)
    np.testing.assert_array_equal(out.numpy(), plain(z).numpy())
    assert 0 < out.numpy().sum(axis=1).max() <= 17


@pytest.mark.parametrize("theta", [0.5, -0.2, 0.0])
def test_hand_written_shrink_gradients_equal_automatic_differentiation(theta):
    """shrink_ss / soft_threshold's written-out gradient against autodiff of the formulas,
    on values that include exact ties |z| = theta and zeros."""
    from model_based import shrinkage
    rng = np.random.default_rng(3)
    z0 = rng.normal(size=(8, 40)).astype(np.float32)
    z0[0, :4] = [theta, -theta, 0.0, 0.0]
    g0 = tf.constant(rng.normal(size=z0.shape).astype(np.float32))

    def reference(z, th, k):
        if k is None:
            return shrinkage._soft_threshold_autodiff(z, th)
        mask = tf.stop_gradient(shrinkage.support_mask(z, th, k))
        return mask * z + shrinkage._soft_threshold_autodiff((1.0 - mask) * z, th)

    def grads(fn):
        z, th = tf.Variable(z0), tf.Variable(theta)
        with tf.GradientTape() as tape:
            out = fn(z, th)
            loss = tf.reduce_sum(out * g0)
        return [out.numpy()] + [v.numpy() for v in tape.gradient(loss, [z, th])]

    for k in (None, 0, 3):
        ours = (lambda z, th: shrinkage.soft_threshold(z, th)) if k is None else (
            lambda z, th: shrinkage.shrink_ss(z, th, k)[0])
        for got, want in zip(grads(tf.function(ours)), grads(lambda z, th: reference(z, th, k))):
            np.testing.assert_array_equal(got, want)


def test_shrinkage_step_has_no_boolean_kernels():
    """The scalar-theta shrinkages (forward and written-out gradient) are float arithmetic
    only: TensorFlow's comparison/select/logical kernels cost 10-20 arithmetic ones each on
    a CPU and were most of a support-selection step's time above its matmuls."""
    from model_based import shrinkage
    z, th = tf.Variable(tf.random.stateless_normal([8, 40], [3, 4])), tf.Variable(0.3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            out, c = shrinkage.shrink_ss(z, th, 5)
            loss = tf.reduce_sum(out * out) + tf.reduce_sum(shrinkage.soft_threshold(z, th))
        return tape.gradient(loss, [z, th]), c

    with shrinkage.kth_on_host():
        ops = {op.type for op in step.get_concrete_function().graph.get_operations()}
    boolean = {"Greater", "GreaterEqual", "Less", "LessEqual", "Equal", "NotEqual", "Select",
               "SelectV2", "LogicalAnd", "LogicalOr", "LogicalNot"}
    assert not ops & boolean, sorted(ops & boolean)


@pytest.mark.parametrize("theta", [0.5, -0.2, 0.0, 1.6])
def test_float_shrinkage_equals_the_boolean_one_to_the_bit(theta):
    """Values, the support mask c and both gradients of the float shrinkage equal the
    previous boolean-mask implementation's, with ties at theta and at the k-th value
    (theta 1.6: rows with at most k entries above theta and rows with more)."""
    from model_based import shrinkage
    rng = np.random.default_rng(5)
    z0 = rng.normal(size=(6, 30)).astype(np.float32)
    z0[0, :4] = [theta, -theta, 0.0, 0.0]
    z0[1, :5] = [2.5, -2.5, 2.5, 3.0, -3.0]     # ties at the 3rd/4th largest magnitude
    g0 = tf.constant(rng.normal(size=z0.shape).astype(np.float32))

    def run(k, where):
        z, th = tf.Variable(z0), tf.Variable(theta)
        with shrinkage.boolean_masks(where), shrinkage.kth_on_host():
            @tf.function
            def fn():
                with tf.GradientTape() as tape:
                    if k is None:
                        out, c = shrinkage.soft_threshold(z, th), tf.zeros_like(z)
                    else:
                        out, c = shrinkage.shrink_ss(z, th, k)
                    loss = tf.reduce_sum(out * g0)
                return [out, c] + tape.gradient(loss, [z, th])
            return [t.numpy() for t in fn()]

    for k in (None, 0, 3, 4):
        for new, old in zip(run(k, False), run(k, True)):
            np.testing.assert_array_equal(new, old)


def test_compare_shrinkage_times_both_implementations_against_the_floor(monkeypatch):
    """run.perf --compare_shrink: both shrinkages timed in each round, wall and CPU time,
    each as a multiple of the floor (on a tiny size)."""
    from model_based import perf
    monkeypatch.setitem(perf.TRAINING_SIZES, "tiny",
                        dict(m=8, n=16, num_layers=2, num_train=256, steps=2))
    report = perf.compare_shrinkage(["alista"], ("tiny",), batch=32, measure_steps=2,
                                    rounds=2, progress=None)
    rows = report["rows"]
    assert [(r["depth"], r["stage"]) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for row in rows:
        for key in ("ms_rounds", "cpu_ms_rounds", "x_floor_rounds", "cpu_x_floor_rounds"):
            assert sorted(row[key]) == ["float", "where"]
            assert all(len(v) == 2 and min(v) > 0 for v in row[key].values())
        assert row["ratio_float_where"] > 0 and row["cpu_ratio_float_where"] > 0

"""Value-level tests of LAMP, TISTA (and its MMSE shrinkage), ALISTA and TiLISTA against
NumPy references written here from the equations of the spec (model_based.md §3.1, §4.4,
§4.5, §4.8), with every learned variable moved off its initialisation."""
import numpy as np
import pytest
import tensorflow as tf

from model_based.alista import Alista
from model_based.lamp import Lamp
from model_based.tilista import Tilista
from model_based.tista import Tista, mmse_shrink
from open_l2o_tf.data import alista_weight, sparse_recovery

M, N, B, T = 16, 32, 6, 4


@pytest.fixture(scope="module")
def problem():
    A = sparse_recovery.gaussian_matrix(M, N, 3)
    W = alista_weight.analytic_weight(A)
    y, _ = sparse_recovery.sample_measurements(A, 4, B)
    return A.astype(np.float64), W.astype(np.float64), y.numpy().astype(np.float64)


def _perturb(model, seed, scale=0.2):
    """Multiplies every learned variable by 1 + scale * U(-1, 1) (seeded); returns a dict
    name -> value (float64) read back from the model."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        value = v.numpy()
        v.assign((value * (1.0 + scale * rng.uniform(-1, 1, value.shape))).astype(np.float32))
    return {v.name: v.numpy().astype(np.float64) for v in model.trainable_variables}


def _soft(z, theta):
    return np.sign(z) * np.maximum(np.abs(z) - theta, 0.0)


def _spectral_L(A):
    return 1.001 * np.linalg.svd(A, compute_uv=False)[0] ** 2


PASSED = []   # how many coordinates the reference let pass unshrunk, per call


def _keep_percentile_shrink(z, theta, t, n, p=1.2, pmax=13.0):
    """Spec §3.1 with the percentile written out: per row, thr = the sorted |z| at index
    round_half_even((n-1)(100-q)/100); S = {|z| > theta and |z| > thr}; z passes on S,
    soft threshold elsewhere."""
    q = min((t + 1) * p, pmax)
    idx = int(np.clip(np.round((n - 1) * (100.0 - q) / 100.0), 0, n - 1))
    a = np.abs(z)
    thr = np.sort(a, axis=1)[:, idx:idx + 1]
    S = (a > theta) & (a > thr)
    PASSED.append(int(S.sum()))
    return np.where(S, z, _soft(z, theta))


def test_lamp_matches_numpy(problem):
    A, _, y = problem
    model = Lamp(A.astype(np.float32), num_layers=T)
    _perturb(model, 0)
    Ws = [model.W[t].numpy().astype(np.float64) for t in range(T)]
    lams = [float(model.lam_t[t].numpy()) for t in range(T)]
    assert len(set(lams)) == T           # the perturbation made the layers differ
    def reference(onsager):
        x = np.zeros((B, N))
        v_prev = np.zeros((B, M))
        expected = []
        for t in range(T):
            b = np.count_nonzero(x, axis=1)[:, None] / M if onsager else 0.0
            v = y - x @ A.T + b * v_prev
            sigma = np.sqrt(np.sum(v ** 2, axis=1, keepdims=True) / M)
            x = _soft(x + v @ Ws[t], np.maximum(lams[t] * sigma, 0.0))
            v_prev = v
            expected.append(x)
        return expected

    expected = reference(True)
    outs = model(y.astype(np.float32))
    for t in range(T):
        np.testing.assert_allclose(outs[t].numpy(), expected[t], rtol=2e-4, atol=2e-5)
    # the Onsager term matters here: without it the last layer is visibly different
    assert np.max(np.abs(reference(False)[-1] - expected[-1])) > 1e-2


def _mmse_numpy(z, tau2, p, a):
    """Bernoulli-Gaussian posterior mean E[x | z] with x ~ (1-p) d_0 + p N(0, a),
    z = x + N(0, tau2), written with plain Gaussian densities."""
    def phi(u, var):
        return np.exp(-u ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)
    on = p * phi(z, a + tau2)
    return z * a / (a + tau2) * on / ((1 - p) * phi(z, tau2) + on)


def test_mmse_shrinkage_is_the_posterior_mean():
    z = np.linspace(-3.0, 3.0, 25)
    tau2, p, a = 0.3, 0.15, 1.7
    got = mmse_shrink(tf.constant(z, tf.float32), tau2, p, a).numpy()
    np.testing.assert_allclose(got, _mmse_numpy(z, tau2, p, a), rtol=1e-5, atol=1e-6)
    # and the closed form is the posterior mean by quadrature over the Gaussian slab
    grid = np.linspace(-15, 15, 60001)
    prior_slab = p * np.exp(-grid ** 2 / (2 * a)) / np.sqrt(2 * np.pi * a)
    for zi, gi in zip(z[::4], got[::4]):
        like = np.exp(-(zi - grid) ** 2 / (2 * tau2))
        like0 = (1 - p) * np.exp(-zi ** 2 / (2 * tau2))
        slab = np.trapezoid(prior_slab * like, grid) if hasattr(np, "trapezoid") else \
            np.trapz(prior_slab * like, grid)
        mean = (np.trapezoid(grid * prior_slab * like, grid) if hasattr(np, "trapezoid")
                else np.trapz(grid * prior_slab * like, grid))
        assert gi == pytest.approx(mean / (slab + like0), rel=1e-4, abs=1e-6)
    # far tails: almost no shrinkage besides the Wiener factor; at 0: exactly 0
    assert got[12] == 0.0
    assert got[0] == pytest.approx(-3.0 * a / (a + tau2), rel=1e-2)


@pytest.mark.parametrize("sigma2", [0.0, 0.01])
def test_tista_matches_numpy(problem, sigma2):
    A, _, y = problem
    model = Tista(A.astype(np.float32), num_layers=T, sigma2=sigma2)
    _perturb(model, 1, scale=0.1)
    P = np.linalg.pinv(A)
    trAtA, trPPt = np.trace(A.T @ A), np.trace(P @ P.T)
    x = np.zeros((B, N))
    expected = []
    for t in range(T):
        W = model.W[t].numpy().astype(np.float64)
        g, p, a2 = (float(v[t].numpy()) for v in (model.gamma, model.p, model.alpha2))
        r = y - x @ A.T
        v2 = np.clip((np.sum(r ** 2, axis=1, keepdims=True) - M * sigma2) / trAtA, 1e-9, 1e6)
        tau2 = v2 / N * (N + (g ** 2 - 2 * g) * M) + g ** 2 * sigma2 * trPPt / N
        x = _mmse_numpy(x + g * r @ W, np.maximum(tau2, 1e-12), p, a2)
        expected.append(x)
    outs = model(y.astype(np.float32))
    for t in range(T):
        np.testing.assert_allclose(outs[t].numpy(), expected[t], rtol=5e-4, atol=5e-5)


def test_alista_matches_numpy(problem):
    A, W, y = problem
    model = Alista(A.astype(np.float32), W.astype(np.float32), num_layers=T)
    _perturb(model, 2)
    L = _spectral_L(A)
    assert float(model.theta[0].numpy()) != pytest.approx(0.4 / L)   # moved off the init
    x = np.zeros((B, N))
    expected = []
    PASSED.clear()
    for t in range(T):
        g, theta = float(model.gamma[t].numpy()), float(model.theta[t].numpy())
        z = x + g * (y - x @ A.T) @ W
        x = _keep_percentile_shrink(z, theta, t, N)
        expected.append(x)
    outs = model(y.astype(np.float32))
    for t in range(T):
        np.testing.assert_allclose(outs[t].numpy(), expected[t], rtol=2e-4, atol=2e-5)
    # support selection was active: in the later layers some coordinates passed unshrunk
    assert PASSED[0] == 0 and sum(PASSED) > 0


def test_tilista_matches_numpy(problem):
    A, _, y = problem
    model = Tilista(A.astype(np.float32), num_layers=T)
    L = _spectral_L(A)
    np.testing.assert_allclose(model.W.numpy(), A / L, rtol=1e-5)   # init A / L (tied)
    _perturb(model, 3)
    W = model.W.numpy().astype(np.float64)
    x = np.zeros((B, N))
    expected = []
    PASSED.clear()
    for t in range(T):
        g, theta = float(model.gamma[t].numpy()), float(model.theta[t].numpy())
        x = _keep_percentile_shrink(x + g * (y - x @ A.T) @ W, theta, t, N)
        expected.append(x)
    outs = model(y.astype(np.float32))
    for t in range(T):
        np.testing.assert_allclose(outs[t].numpy(), expected[t], rtol=2e-4, atol=2e-5)
    assert sum(PASSED) > 0
    assert model.layer_variables(0)[0] is model.W      # the tied W belongs to layer 0

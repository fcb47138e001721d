"""Tests of open_l2o_tf.metrics against NumPy."""
import numpy as np
import pytest

from open_l2o_tf import metrics


def _np_nmse_db_per_sample(x_hat, x):
    err = np.mean((x_hat - x) ** 2, axis=-1) + 1e-10
    ref = np.mean(x ** 2, axis=-1) + 1e-10
    return 10 * np.log10(err / ref)


def test_nmse_db_is_per_sample_mean_and_differs_from_aggregate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 20)).astype(np.float32)
    x[:32] *= 0.1  # heterogeneous sample norms make the two definitions differ
    x_hat = x + 0.05 * rng.normal(size=x.shape).astype(np.float32)
    per_sample = _np_nmse_db_per_sample(x_hat.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(metrics.nmse_db_per_sample(x_hat, x).numpy(), per_sample,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(metrics.nmse_db(x_hat, x)), per_sample.mean(),
                               rtol=1e-5, atol=1e-4)
    agg = 10 * np.log10(np.sum((x_hat - x) ** 2) / np.sum(x ** 2))
    np.testing.assert_allclose(float(metrics.nmse_db_aggregate(x_hat, x)), agg, rtol=1e-4)
    assert abs(float(metrics.nmse_db(x_hat, x)) - agg) > 1.0


def test_nmse_db_guards_at_zero():
    zero = np.zeros((3, 5), np.float32)
    # 0/0 -> log10(1e-10 / 1e-10) = 0 dB, finite
    np.testing.assert_allclose(metrics.nmse_db_per_sample(zero, zero).numpy(), 0.0, atol=1e-6)
    # x_hat = 0 for x != 0 -> about 0 dB; exact x_hat = x -> the guard floor
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(metrics.nmse_db_per_sample(zero[:2, :4], x).numpy(), 0.0,
                               atol=1e-4)
    np.testing.assert_allclose(metrics.nmse_db_per_sample(x, x).numpy(), -100.0, atol=1e-3)


def test_lasso_objective_shared_and_batched_A():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(4, 6)).astype(np.float32)
    x = rng.normal(size=(3, 6)).astype(np.float32)
    y = rng.normal(size=(3, 4)).astype(np.float32)
    expected = 0.5 * np.sum((x @ A.T - y) ** 2, -1) + 0.1 * np.abs(x).sum(-1)
    np.testing.assert_allclose(metrics.lasso_objective(A, x, y, 0.1).numpy(), expected,
                               rtol=1e-5)
    Ab = np.stack([A, 2 * A, -A])
    expected_b = np.array([0.5 * np.sum((Ab[i] @ x[i] - y[i]) ** 2) + 0.1 * np.abs(x[i]).sum()
                           for i in range(3)])
    np.testing.assert_allclose(metrics.lasso_objective(Ab, x, y, 0.1).numpy(), expected_b,
                               rtol=1e-5)


def test_relative_loss_is_ratio_of_means_and_accepts_float32_tensors():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    f_star = np.array([1.0, 3.0])
    curve = np.array([[3.0, 5.0], [1.0, 3.0]])
    np.testing.assert_allclose(metrics.relative_loss(curve, f_star).numpy(), [1.0, 0.0])
    # mean of ratios would be (2 + 2/3)/2 = 1.33, ratio of means is 4/4 = 1
    r = metrics.relative_loss(tf.constant(curve, tf.float32), tf.constant(f_star, tf.float32))
    assert r.dtype == tf.float64
    np.testing.assert_allclose(r.numpy(), [1.0, 0.0], atol=1e-7)


if __name__ == "__main__":
    pytest.main([__file__])

"""Metrics of the benchmark: NMSE in dB, the Lasso objective, the relative loss (19).

All functions take batch-first tensors (``(batch, n)``) and work on NumPy arrays or TF
tensors alike (they use TF ops and return tensors).
"""
import numpy as np
import tensorflow as tf

_GUARD = 1e-10


def _as(value, dtype):
    """``value`` as a tensor of ``dtype`` (casting tensors/arrays of another float dtype)."""
    if not tf.is_tensor(value):
        value = np.asarray(value)
    return tf.cast(value, dtype)


def nmse_db(x_hat, x_true):
    """Per-sample NMSE in dB averaged over samples, as Open-L2O's Keras metric.

    ``mean_b 10 log10((mean_i (x_hat - x)^2 + 1e-10) / (mean_i x^2 + 1e-10))``.
    """
    return tf.reduce_mean(nmse_db_per_sample(x_hat, x_true))


def nmse_db_per_sample(x_hat, x_true):
    """The per-sample NMSE in dB (shape ``(batch,)``) with the original's 1e-10 guards."""
    x_hat = _as(x_hat, tf.float32)
    x_true = _as(x_true, tf.float32)
    err = tf.reduce_mean(tf.square(x_hat - x_true), axis=-1) + _GUARD
    ref = tf.reduce_mean(tf.square(x_true), axis=-1) + _GUARD
    return 10.0 * tf.math.log(err / ref) / tf.math.log(10.0)


def nmse_db_aggregate(x_hat, x_true):
    """Aggregate NMSE in dB: ``10 log10(sum ||x_hat - x||^2 / sum ||x||^2)`` (linear-lista-cpss)."""
    x_hat = _as(x_hat, tf.float32)
    x_true = _as(x_true, tf.float32)
    ratio = tf.reduce_sum(tf.square(x_hat - x_true)) / tf.reduce_sum(tf.square(x_true))
    return 10.0 * tf.math.log(ratio) / tf.math.log(10.0)


def lasso_objective(A, x, y, lam):
    """Per-sample Lasso objective ``1/2 ||A x - y||^2 + lam ||x||_1``, shape ``(batch,)``.

    ``A`` is ``(m, n)`` shared by the batch or ``(batch, m, n)``; ``x`` is ``(batch, n)``
    and ``y`` is ``(batch, m)``.
    """
    A = _as(A, tf.float32)
    x = _as(x, tf.float32)
    y = _as(y, tf.float32)
    if A.shape.rank == 3:
        residual = tf.einsum("bmn,bn->bm", A, x) - y
    else:
        residual = tf.matmul(x, A, transpose_b=True) - y
    return 0.5 * tf.reduce_sum(tf.square(residual), -1) + lam * tf.reduce_sum(tf.abs(x), -1)


def relative_loss(f_values, f_star):
    """The paper's modified relative loss (19): ``R = E[f(x) - f*] / E[f*]``.

    ``f_values`` has shape ``(..., batch)`` (e.g. a curve ``(iterations, batch)``) and
    ``f_star`` shape ``(batch,)``; the expectation is the mean over the batch axis.
    """
    f_values = _as(f_values, tf.float64)
    f_star = _as(f_star, tf.float64)
    mean_star = tf.reduce_mean(f_star)
    return (tf.reduce_mean(f_values, axis=-1) - mean_star) / mean_star


def first_nonfinite(curve):
    """The index of the first NaN or Inf in a 1-D loss curve, or None when every value is
    finite: the step at which a run diverged, which its final value alone (NaN) hides."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(curve, np.float64)))
    return int(bad[0]) if bad.size else None

"""The ALISTA analytic weight (Liu, Chen, Wang & Yin, ICLR 2019, App. E.1, Algorithm 1).

``W~ = argmin_W ||W^T A||_F^2`` over the off-diagonal entries, subject to
``diag(W^T A) = 1``, by projected gradient (spec model_based §4.4):

``W <- W - eta A (A^T W - I)``, then per column ``w_i <- w_i + (1 - a_i . w_i) a_i``
(exact projection when ``||a_i|| = 1``), from ``W = A``, with ``eta = min(0.1, 1/||A||_2^2)``
(the original's fixed 0.1 may diverge for a coherent dictionary), until the relative change
of the objective is below ``tol`` or ``iterations`` are done.  Computed in float64 with
TensorFlow (no MATLAB).
"""
import numpy as np
import tensorflow as tf


@tf.function
def _solve(A, eta, iterations, tol):
    n = tf.shape(A)[1]
    eye = tf.eye(n, dtype=A.dtype)
    norms2 = tf.reduce_sum(A * A, axis=0)

    def objective(W):
        G = tf.matmul(A, W, transpose_a=True)
        return tf.reduce_sum(tf.square(G * (1.0 - eye)))

    def project(W):
        d = tf.reduce_sum(A * W, axis=0)
        return W + (1.0 - d) / norms2 * A

    def body(k, W, f_prev, change):
        W = project(W - eta * tf.matmul(A, tf.matmul(A, W, transpose_a=True) - eye))
        f = objective(W)
        return k + 1, W, f, tf.abs(f_prev - f) / tf.maximum(f_prev, 1e-300)

    W0 = project(A)
    _, W, _, _ = tf.while_loop(
        lambda k, W, f, c: tf.logical_and(k < iterations, c > tol), body,
        (tf.constant(0), W0, objective(W0), tf.constant(1.0, A.dtype)))
    return W


def analytic_weight(A, iterations=1000, eta=None, tol=1e-12):
    """``W~`` (m, n) float32 for ``A`` (m, n)."""
    A64 = tf.constant(np.asarray(A, np.float64))
    if eta is None:
        eta = min(0.1, 1.0 / float(np.linalg.norm(np.asarray(A, np.float64), 2) ** 2))
    W = _solve(A64, tf.constant(eta, tf.float64), tf.constant(int(iterations)),
               tf.constant(tol, tf.float64))
    return W.numpy().astype(np.float32)


def check_weight(W, A):
    """``(max |diag(W^T A) - 1|, max |off-diagonal of W^T A|)``."""
    G = np.asarray(W, np.float64).T @ np.asarray(A, np.float64)
    off = G - np.diag(np.diag(G))
    return float(np.max(np.abs(np.diag(G) - 1.0))), float(np.max(np.abs(off)))

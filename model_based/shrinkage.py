"""Thresholding operators of the unrolled networks (spec model_based §3).

* ``soft_threshold(z, theta) = sign(z) max(|z| - theta, 0)`` (the "free" version: no clamp
  on a learned theta, as Open-L2O).
* ``shrink_ss(z, theta, k)``: support selection (LISTA-CPSS, Chen et al. 2018, Eq. for
  "shrinkage with support selection"): per sample, coordinates whose magnitude is above
  theta **and** above the (k+1)-th largest magnitude pass unchanged, all others are soft
  thresholded.  The mask has no gradient.  ``k`` comes from the percentage schedule
  ``q_t = min((t+1) p, p_max)`` through the original's nearest-rank percentile
  (``ss_keep_count``), and the threshold is found with ``tf.math.top_k`` (no full sort).
"""
import contextlib
import threading

import numpy as np
import tensorflow as tf

_KTH = threading.local()


@contextlib.contextmanager
def kth_on_host(enabled=True):
    """While tracing inside this context, ``support_mask`` finds the (k+1)-th largest
    magnitude with NumPy's ``partition`` (a ``tf.numpy_function``: O(n) per row) instead of
    ``tf.math.top_k`` (which sorts; about 2 ms for 128 x 512 on one core, the largest
    single cost of a support-selection step).  Same values; graph mode without XLA only
    (the progressive trainer uses it when it does not XLA-compile)."""
    previous = getattr(_KTH, "host", False)
    _KTH.host = bool(enabled)
    try:
        yield
    finally:
        _KTH.host = previous


def _kth_largest_np(a, k):
    return -np.partition(-a, k, axis=1)[:, k:k + 1]


def kth_largest(a, k):
    """``(b, 1)``: the (k+1)-th largest entry of every row of ``a`` (0-based ``k``)."""
    if getattr(_KTH, "host", False) and not tf.executing_eagerly():
        out = tf.numpy_function(lambda v: _kth_largest_np(v, k), [tf.stop_gradient(a)],
                                tf.float32, stateful=False)
        return tf.reshape(out, [-1, 1])
    return tf.math.top_k(a, k=k + 1, sorted=True).values[:, k:k + 1]


def soft_threshold(z, theta):
    return tf.sign(z) * tf.maximum(tf.abs(z) - theta, 0.0)


def ss_percent(t, per_layer=1.2, max_percent=13.0):
    """The support-selection percentage of layer ``t`` (0-based): ``clip((t+1)p, 0, pmax)``."""
    return float(np.clip((t + 1) * per_layer, 0.0, max_percent))


def ss_keep_count(n, percent):
    """``k``: how many coordinates at most skip the shrinkage for ``percent`` % of ``n``.

    The original takes the ``(100 - q)``-th percentile with nearest rank:
    ``idx = round_half_even((n - 1)(100 - q)/100)`` of the ascending magnitudes, and keeps
    the coordinates strictly above it, i.e. at most ``k = n - 1 - idx``.
    """
    idx = int(np.clip(np.round((n - 1) * (100.0 - percent) / 100.0), 0, n - 1))
    return n - 1 - idx


def support_mask(z, theta, k):
    """``1_S`` (float, no gradient): ``|z| > theta`` and ``|z| >`` the (k+1)-th largest."""
    a = tf.abs(z)
    if k <= 0:
        return tf.zeros_like(z)
    kth = kth_largest(a, k)
    mask = tf.logical_and(a > theta, a > kth)
    return tf.stop_gradient(tf.cast(mask, z.dtype))


def shrink_ss(z, theta, k):
    """Support-selection shrinkage; returns ``(x, c)`` with ``c = 1 - 1_S``."""
    mask = support_mask(z, theta, k)
    return mask * z + soft_threshold((1.0 - mask) * z, theta), 1.0 - mask

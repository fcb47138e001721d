"""Thresholding operators of the unrolled networks (spec model_based §3).

* ``soft_threshold(z, theta) = sign(z) max(|z| - theta, 0)`` (the "free" version: no clamp
  on a learned theta, as Open-L2O).
* ``shrink_ss(z, theta, k)``: support selection (LISTA-CPSS, Chen et al. 2018, Eq. for
  "shrinkage with support selection"): per sample, coordinates whose magnitude is above
  theta **and** above the (k+1)-th largest magnitude pass unchanged, all others are soft
  thresholded.  The mask has no gradient.  ``k`` comes from the percentage schedule
  ``q_t = min((t+1) p, p_max)`` through the original's nearest-rank percentile
  (``ss_keep_count``); the row bound ``max((k+1)-th largest, theta)`` is found with
  ``tf.math.top_k`` (no full sort), or on a CPU without XLA with NumPy's partition of only
  the rows that have more than ``k`` entries above theta (:func:`support_bar`).

Both carry a hand-written gradient (``_shrink``) for a scalar theta: the same values and the
same gradients as automatic differentiation of the formulas above, including its choice at
ties (``|z| = theta`` passes the gradient of ``z``, as ``tf.maximum`` does), in float
arithmetic only (no comparison, logical or select kernel: on a CPU those cost 10-20 times an
arithmetic kernel on a (128, 512) batch).  :func:`boolean_masks` selects the previous
implementation (boolean masks and ``tf.where``, the same values and gradients) for timing
(``run.perf --what=training --compare_shrink``).
Other theta shapes (LAMP's per-sample threshold) use the automatic gradient.
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
    (the progressive trainer uses it when it does not XLA-compile and runs on a CPU:
    :meth:`open_l2o_tf.device.Policy.kth_on_host`; on a GPU it would copy the activations
    to the host and back at every layer of every step)."""
    previous = getattr(_KTH, "host", False)
    _KTH.host = bool(enabled)
    try:
        yield
    finally:
        _KTH.host = previous


def _kth_largest_np(a, k):
    col = a.shape[1] - 1 - k          # ascending rank of the (k+1)-th largest
    return np.partition(a, col, axis=1)[:, col:col + 1]


def _support_bar_np(a, theta, k):
    """``max((k+1)-th largest of the row, theta)`` per row of ``a``; the rows with at most
    ``k`` entries above ``theta`` need no partition (their (k+1)-th largest is <= theta)."""
    theta = np.float32(theta)
    bar = np.full((a.shape[0], 1), theta, np.float32)
    rows = np.flatnonzero(np.count_nonzero(a > theta, axis=1) > k)
    if rows.size:
        col = a.shape[1] - 1 - k
        bar[rows] = np.maximum(np.partition(a[rows], col, axis=1)[:, col:col + 1], theta)
    return bar


def support_bar(a, theta, k):
    """``(b, 1)``: ``max((k+1)-th largest of the row of a, theta)``: ``|z| > bar`` is the
    support ``|z| > theta and |z| > the (k+1)-th largest``.  On the host (NumPy, under
    :func:`kth_on_host`) only the rows with more than ``k`` entries above ``theta`` are
    partitioned."""
    if getattr(_KTH, "host", False) and not tf.executing_eagerly():
        out = tf.numpy_function(lambda v, t: _support_bar_np(v, t, k),
                                [tf.stop_gradient(a), tf.stop_gradient(theta)], tf.float32,
                                stateful=False)
        return tf.reshape(out, [-1, 1])
    return tf.maximum(kth_largest(a, k), tf.stop_gradient(theta))


def kth_largest(a, k):
    """``(b, 1)``: the (k+1)-th largest entry of every row of ``a`` (0-based ``k``)."""
    if getattr(_KTH, "host", False) and not tf.executing_eagerly():
        out = tf.numpy_function(lambda v: _kth_largest_np(v, k), [tf.stop_gradient(a)],
                                tf.float32, stateful=False)
        return tf.reshape(out, [-1, 1])
    return tf.math.top_k(a, k=k + 1, sorted=True).values[:, k:k + 1]


def _soft_threshold_autodiff(z, theta):
    return tf.sign(z) * tf.maximum(tf.abs(z) - theta, 0.0)


_TINY = float(np.finfo(np.float32).tiny)
_IMPL = threading.local()


@contextlib.contextmanager
def boolean_masks(enabled=True):
    """While tracing inside this context, the scalar-theta shrinkages use the previous
    implementation (:func:`_shrink_where`: boolean masks and ``tf.where``) instead of
    :func:`_shrink`; the same values and gradients, slower on a CPU (``run.perf
    --what=training --compare_shrink`` times both in one process)."""
    previous = getattr(_IMPL, "where", False)
    _IMPL.where = bool(enabled)
    try:
        yield
    finally:
        _IMPL.where = previous


def _shrink(z, theta, bar=None, a=None):
    """``keep ? z : soft_threshold(z, theta)`` for a scalar ``theta``, where ``keep`` is
    ``|z| > bar`` (``bar``: None, nothing kept, or the ``(b, 1)`` row bound
    ``max(k-th value, theta)`` of the support selection), with the gradient written out:
    d/dz = keep or (|z| >= theta and z != 0); d/dtheta = -sum over the shrunk entries of
    g sign(z) (those with |z| >= theta, not kept).  ``a``: ``|z|`` when the caller has it.
    Returns ``(x, c)``, ``c = 1 - keep`` (None without ``bar``).

    Only float arithmetic, no boolean tensor: on a CPU TensorFlow's comparison, logical
    and select kernels cost 10-20 times an arithmetic one on a (128, 512) batch, and they
    were most of a support-selection step's time above its matmuls.  With ``s = sign(z)``:

        c = 1 - sign(relu(|z| - bar))          (0 on the kept entries, else 1)
        x = s relu(|z| - theta c)              (kept: s |z| = z; else soft threshold)

    every product is by 0 or +-1, so ``x`` is the float of ``sign(z) max(|z| - theta, 0)``
    (or ``z``) to the bit, as :func:`_shrink_where`.  The gradient's mask ``|z| >= theta``
    is ``relu_grad(g, sign(|z| - max(theta, tiny)) + 1)``: one fused kernel, the tie
    ``|z| = theta`` passing (as ``tf.maximum``'s gradient), ``z = 0`` not.
    """
    a = tf.abs(z) if a is None else a
    c = None if bar is None else 1.0 - tf.sign(tf.nn.relu(a - bar))

    @tf.custom_gradient
    def shrink(z, theta):
        s = tf.sign(z)
        out = s * tf.nn.relu(a - (theta if c is None else theta * c))

        def grad(g):
            gz = tf.raw_ops.ReluGrad(gradients=g,
                                     features=tf.sign(a - tf.maximum(theta, _TINY)) + 1.0)
            gs = gz * s if c is None else gz * (s * c)
            return gz, -tf.reduce_sum(gs)

        return out, grad

    return shrink(z, theta), c


def _shrink_where(z, theta, keep=None, a=None):
    """The previous :func:`_shrink` (boolean masks and ``tf.where``); the same values and
    gradients.  ``keep``: the boolean support; ``a``: ``|z|`` when the caller has it."""

    @tf.custom_gradient
    def shrink(z, theta):
        s = tf.sign(z)
        live = (tf.abs(z) if a is None else a) >= theta   # tf.maximum's tie rule: |z| = theta
        shrunk = live if keep is None else tf.logical_and(live, tf.logical_not(keep))
        out = tf.where(live, z - s * theta, 0.0)        # exactly 0 at |z| = theta
        if keep is not None:
            out = tf.where(keep, z, out)

        def grad(g):
            gs = tf.where(shrunk, g * s, 0.0)
            gz = gs * s if keep is None else tf.where(keep, g, gs * s)
            return gz, -tf.reduce_sum(gs)

        return out, grad

    return shrink(z, theta)


def _where_masks():
    return getattr(_IMPL, "where", False)


def soft_threshold(z, theta):
    theta = tf.convert_to_tensor(theta, z.dtype)
    if theta.shape.rank != 0:
        return _soft_threshold_autodiff(z, theta)
    if _where_masks():
        return _shrink_where(z, theta)
    return _shrink(z, theta)[0]


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


def _support(a, theta, k):
    """The boolean support ``S`` from ``a = |z|`` (no gradient): ``|z| > theta`` and
    ``|z| >`` the (k+1)-th largest."""
    return tf.logical_and(a > theta, a > kth_largest(a, k))


def support_mask(z, theta, k):
    """``1_S`` (float, no gradient): ``|z| > theta`` and ``|z| >`` the (k+1)-th largest."""
    if k <= 0:
        return tf.zeros_like(z)
    return tf.cast(_support(tf.stop_gradient(tf.abs(z)), theta, k), z.dtype)


def shrink_ss(z, theta, k):
    """Support-selection shrinkage; returns ``(x, c)`` with ``c = 1 - 1_S``:
    ``x = 1_S z + soft_threshold((1 - 1_S) z, theta)``."""
    theta = tf.convert_to_tensor(theta, z.dtype)
    if k <= 0:
        return soft_threshold(z, theta), tf.ones_like(z)
    if theta.shape.rank != 0 or _where_masks():
        a = tf.stop_gradient(tf.abs(z))
        keep = _support(a, tf.stop_gradient(theta), k)
        c = 1.0 - tf.cast(keep, z.dtype)
        if theta.shape.rank != 0:
            return (1.0 - c) * z + _soft_threshold_autodiff(c * z, theta), c
        return _shrink_where(z, theta, keep, a), c
    # |z| > theta and |z| > k-th value  <=>  |z| > max(k-th value, theta)
    a = tf.stop_gradient(tf.abs(z))
    return _shrink(z, theta, support_bar(a, theta, k), a)

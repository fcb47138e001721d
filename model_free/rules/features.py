"""Gradient preprocessing of the coordinate-wise optimizers.

* ``log_and_sign(g, k)`` (L2O-DM, Andrychowicz et al. 2016, Appendix A; spec model_free
  §2.2): ``[max(log(|g| + eps)/k, -1), clip(g e^k, -1, 1)]`` with eps the float32 machine
  epsilon; equal to the paper's rule ``(log|g|/p, sign g)`` if ``|g| >= e^-p`` else
  ``(-1, e^p g)``.
* ``rnnprop_features`` (L2O-RNNprop, Lv et al. 2017; spec §3.1): Adam-normalised
  ``[m_hat / (sqrt(v_hat) + eps), g / (sqrt(v_hat) + eps)]`` with ``beta1 = beta2 = 0.95``,
  bias-corrected moments, eps = 1e-8.
"""
import numpy as np
import tensorflow as tf

EPS32 = float(np.finfo(np.float32).eps)


def log_and_sign(g, k=5.0):
    log = tf.maximum(tf.math.log(tf.abs(g) + EPS32) / k, -1.0)
    sign = tf.clip_by_value(g * float(np.exp(k)), -1.0, 1.0)
    return tf.concat([log, sign], axis=-1)


def rnnprop_features(g, m, v, t, beta1=0.95, beta2=0.95, eps=1e-8):
    """Returns ``(features (N, 2), m, v)``; ``t`` is the 1-based step (float scalar)."""
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    m_hat = m / (1.0 - beta1 ** t)
    v_hat = v / (1.0 - beta2 ** t)
    denom = tf.sqrt(v_hat) + eps
    return tf.concat([m_hat / denom, g / denom], axis=-1), m, v

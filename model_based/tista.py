"""TISTA (trainable ISTA, Ito, Takabe & Wadayama 2019; spec model_based §4.8).

    r       = y - A x_t
    v^2     = clip((||r||^2 - m sigma^2) / tr(A^T A), 1e-9, 1e6)
    tau^2   = v^2 / n (n + (gamma_t^2 - 2 gamma_t) m) + gamma_t^2 sigma^2 tr(P P^T) / n,  P = pinv(A)
    x_{t+1} = eta_MMSE(x_t + gamma_t W_t^T r; tau^2, p_t, alpha_t^2)

with the Bernoulli-Gaussian MMSE shrinkage ``eta(z) = z a/(a+tau^2) * p phi(z; a+tau^2) /
((1-p) phi(z; tau^2) + p phi(z; a+tau^2))`` (a = alpha^2).  Learned (Open-L2O): ``W_t`` init
``A``, ``gamma_t`` init 1, ``p_t`` init 0.1, ``alpha^2_t`` init 1.  ``sigma2`` is the noise
variance (0 for noiseless data, about 0.002 for 20 dB on 256x512).  Not TiLISTA
(see :mod:`model_based.tilista`).
"""
import keras
import numpy as np
import tensorflow as tf

from model_based.base import UnrolledModel


def _log_phi(z, var):
    return -tf.square(z) / (2.0 * var) - 0.5 * tf.math.log(2.0 * np.pi * var)


def mmse_shrink(z, tau2, p, alpha2):
    """Bernoulli-Gaussian MMSE estimate (computed in the log domain for stability)."""
    big = alpha2 + tau2
    log_on = tf.math.log(p) + _log_phi(z, big)
    log_off = tf.math.log(1.0 - p) + _log_phi(z, tau2)
    weight = tf.sigmoid(log_on - log_off)
    return z * alpha2 / big * weight


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class Tista(UnrolledModel):

    def __init__(self, A, num_layers=16, lam=0.4, sigma2=0.0, **kwargs):
        self.sigma2 = float(sigma2)
        super().__init__(A, num_layers, lam, **kwargs)

    def derive_constants(self):
        A64 = self.A_np.astype(np.float64)
        self.trace_AtA = float(np.sum(A64 * A64))
        pinv = np.linalg.pinv(A64)
        self.trace_PPt = float(np.sum(pinv * pinv))

    def create_variables(self):
        T = self.num_layers
        self.W = [self._add("W", self.A_np, t) for t in range(T)]
        self.gamma = [self._add("gamma", 1.0, t) for t in range(T)]
        self.p = [self._add("p", 0.1, t) for t in range(T)]
        self.alpha2 = [self._add("alpha2", 1.0, t) for t in range(T)]

    def layer(self, t, y, x, state):
        r = self.residual(y, x)
        m, n = float(self.m), float(self.n)
        v2 = (tf.reduce_sum(tf.square(r), axis=1, keepdims=True) - m * self.sigma2)
        v2 = tf.clip_by_value(v2 / self.trace_AtA, 1e-9, 1e6)
        g = self.gamma[t]
        tau2 = v2 / n * (n + (g * g - 2.0 * g) * m) + g * g * self.sigma2 * self.trace_PPt / n
        tau2 = tf.maximum(tau2, 1e-12)
        z = x + g * tf.matmul(r, self.W[t])
        return mmse_shrink(z, tau2, self.p[t], self.alpha2[t]), state

    def get_config(self):
        return {**super().get_config(), "sigma2": self.sigma2}

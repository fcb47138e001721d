"""LAMP (learned AMP, Borgerding, Schniter & Rangan 2017; spec model_based §4.5).

Per sample, with ``v_{-1} = 0``:

    b_t     = ||x_t||_0 / m                     (Onsager term of soft thresholding)
    v_t     = y - A x_t + b_t v_{t-1}
    sigma_t = sqrt(||v_t||^2 / m)
    x_{t+1} = eta_{max(lam_t sigma_t, 0)}(x_t + W_t^T v_t)

Learned: ``W_t`` (m, n) init ``A / L``; ``lam_t`` init ``lam`` (= 0.4, **not** divided by L,
it multiplies sigma).  ``v_t`` is the state carried from layer to layer (the progressive
trainer caches it with ``x_t`` for stage 1).
"""
import keras
import tensorflow as tf

from model_based.base import UnrolledModel
from model_based.shrinkage import soft_threshold


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class Lamp(UnrolledModel):

    def create_variables(self):
        self.W = [self._add("W", self.A_np / self.L, t) for t in range(self.num_layers)]
        self.lam_t = [self._add("lam", self.lam, t) for t in range(self.num_layers)]

    def initial_state(self, y):
        return tf.zeros_like(y)

    def layer(self, t, y, x, v_prev):
        b = tf.reduce_sum(tf.cast(tf.not_equal(x, 0.0), tf.float32), axis=1,
                          keepdims=True) / self.m
        v = self.residual(y, x) + b * v_prev
        sigma = tf.sqrt(tf.reduce_sum(tf.square(v), axis=1, keepdims=True) / self.m)
        r = x + tf.matmul(v, self.W[t])
        return soft_threshold(r, tf.maximum(self.lam_t[t] * sigma, 0.0)), v

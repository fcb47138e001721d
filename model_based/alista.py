"""ALISTA (Liu, Chen, Wang & Yin, ICLR 2019; spec model_based §4.4).

    x_{t+1} = shrink_ss(x_t + gamma_t W~^T (y - A x_t), theta_t, q_t)

``W~`` is the fixed analytic weight (``W.npy``, :mod:`open_l2o_tf.data.alista_weight`);
only ``gamma_t`` (init 1) and ``theta_t`` (init ``lam / L`` with L of A) are learned: 2T
scalars.  Support selection as LISTA-CPSS (p = 1.2 %, p_max = 13 %).
"""
import keras
import numpy as np
import tensorflow as tf

from model_based.base import UnrolledModel, _as_matrix, placeholder_matrix
from model_based.shrinkage import shrink_ss, ss_keep_count, ss_percent
from open_l2o_tf.errors import UserError


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class Alista(UnrolledModel):

    FIXED_W = True    # W~ is data, saved with the model (TiLISTA learns its W instead)
    needs_W = True
    support_selection = True
    perf_training = True

    def __init__(self, A, W=None, num_layers=16, lam=0.4, ss_q_per_layer=1.2, ss_maxq=13.0,
                 **kwargs):
        if W is None:
            if self.FIXED_W:
                raise UserError("ALISTA needs its analytic weight W (W.npy)")
            W = A
        self._set_W(_as_matrix(W, "W"), np.shape(A))
        self.ss_q_per_layer = float(ss_q_per_layer)
        self.ss_maxq = float(ss_maxq)
        super().__init__(A, num_layers, lam, **kwargs)
        self.keep = [ss_keep_count(self.n, ss_percent(t, self.ss_q_per_layer, self.ss_maxq))
                     for t in range(self.num_layers)]
        if self.FIXED_W:
            self.W_weight = self._add_fixed("W_matrix", self.W_np)

    def _set_W(self, W, shape=None):
        W = np.asarray(W, np.float32)
        shape = tuple(shape) if shape is not None else (self.m, self.n)
        if W.shape != shape:
            raise UserError(f"ALISTA's W must have the shape of A {shape}, got {W.shape}")
        self.W_np = W
        self.Wt = tf.constant(self.W_np)

    def fixed_weights(self):
        out = super().fixed_weights()
        if self.FIXED_W:
            out["W_matrix"] = (self.W_weight, self._set_W)
        return out

    def create_variables(self):
        self.gamma = [self._add("step_size", 1.0, t) for t in range(self.num_layers)]
        self.theta = [self._add("theta", self.theta_init, t) for t in range(self.num_layers)]

    def weight(self):
        """The matrix of the data-fidelity step (fixed W~ here; learned in TiLISTA)."""
        return self.Wt

    def layer(self, t, y, x, state):
        z = x + self.gamma[t] * tf.matmul(self.residual(y, x), self.weight())
        x_new, _ = shrink_ss(z, self.theta[t], self.keep[t])
        return x_new, state

    def get_config(self):
        return {**super().get_config(), "ss_q_per_layer": self.ss_q_per_layer,
                "ss_maxq": self.ss_maxq}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if cls.FIXED_W and "W" not in config and "m" in config:
            config["W"] = placeholder_matrix(config["m"], config["n"])
        return super().from_config(config)

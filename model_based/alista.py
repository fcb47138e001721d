"""ALISTA (Liu, Chen, Wang & Yin, ICLR 2019; spec model_based §4.4).

    x_{t+1} = shrink_ss(x_t + gamma_t W~^T (y - A x_t), theta_t, q_t)

``W~`` is the fixed analytic weight (``W.npy``, :mod:`open_l2o_tf.data.alista_weight`);
only ``gamma_t`` (init 1) and ``theta_t`` (init ``lam / L`` with L of A) are learned: 2T
scalars.  Support selection as LISTA-CPSS (p = 1.2 %, p_max = 13 %).
"""
import keras
import numpy as np
import tensorflow as tf

from model_based.base import UnrolledModel, _as_matrix
from model_based.shrinkage import shrink_ss, ss_keep_count, ss_percent
from open_l2o_tf.errors import UserError


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class Alista(UnrolledModel):

    def __init__(self, A, W, num_layers=16, lam=0.4, ss_q_per_layer=1.2, ss_maxq=13.0,
                 **kwargs):
        self.W_np = _as_matrix(W, "W")
        if self.W_np.shape != np.shape(A):
            raise UserError(f"ALISTA's W must have the shape of A {np.shape(A)}, got "
                            f"{self.W_np.shape}")
        self.Wt = tf.constant(self.W_np)
        self.ss_q_per_layer = float(ss_q_per_layer)
        self.ss_maxq = float(ss_maxq)
        super().__init__(A, num_layers, lam, **kwargs)
        self.keep = [ss_keep_count(self.n, ss_percent(t, self.ss_q_per_layer, self.ss_maxq))
                     for t in range(self.num_layers)]

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
        return {**super().get_config(), "W": self.W_np.tolist(),
                "ss_q_per_layer": self.ss_q_per_layer, "ss_maxq": self.ss_maxq}

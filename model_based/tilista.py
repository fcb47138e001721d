"""TiLISTA (tied LISTA, Liu et al. 2019 ALISTA repository; spec model_based §4.8, note).

    x_{t+1} = shrink_ss(x_t + gamma_t W^T (y - A x_t), theta_t, q_t)

with ONE tied learned ``W`` (m, n), init ``A / L`` (belongs to layer 0), ``gamma_t`` init 1,
``theta_t = lam / L``.  Not part of Open-L2O's Fig. 5; provided for completeness.
"""
import keras
import tensorflow as tf

from model_based.base import UnrolledModel
from model_based.shrinkage import shrink_ss, ss_keep_count, ss_percent


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class Tilista(UnrolledModel):

    def __init__(self, A, num_layers=16, lam=0.4, ss_q_per_layer=1.2, ss_maxq=13.0,
                 **kwargs):
        self.ss_q_per_layer = float(ss_q_per_layer)
        self.ss_maxq = float(ss_maxq)
        super().__init__(A, num_layers, lam, **kwargs)
        self.keep = [ss_keep_count(self.n, ss_percent(t, self.ss_q_per_layer, self.ss_maxq))
                     for t in range(self.num_layers)]

    def create_variables(self):
        self.W = self._add("W", self.A_np / self.L, 0)
        self.gamma = [self._add("step_size", 1.0, t) for t in range(self.num_layers)]
        self.theta = [self._add("theta", self.theta_init, t) for t in range(self.num_layers)]

    def layer(self, t, y, x, state):
        z = x + self.gamma[t] * tf.matmul(self.residual(y, x), self.W)
        x_new, _ = shrink_ss(z, self.theta[t], self.keep[t])
        return x_new, state

    def get_config(self):
        return {**super().get_config(), "ss_q_per_layer": self.ss_q_per_layer,
                "ss_maxq": self.ss_maxq}

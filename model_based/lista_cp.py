"""LISTA-CP (Chen, Liu, Wang & Yin 2018, weight coupling; spec model_based §4.2).

    x_{t+1} = eta_{theta_t}(x_t + W_t^T (y - A x_t))

with untied ``W_t`` (m, n) and ``theta_t = lam / L``.  Init: the original Open-L2O code
initialises ``W_t = A`` (step 1 instead of ISTA's 1/L: an original quirk kept by default,
``faithful_init=True``); ``faithful_init=False`` gives the predecessor's ``W_t = A / L``,
for which the model at initialisation is exactly ISTA.
"""
import keras

from model_based.base import UnrolledModel
from model_based.shrinkage import soft_threshold
import tensorflow as tf


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class ListaCp(UnrolledModel):

    def __init__(self, A, num_layers=16, lam=0.4, faithful_init=True, **kwargs):
        self.faithful_init = bool(faithful_init)
        super().__init__(A, num_layers, lam, **kwargs)

    def create_variables(self):
        W0 = self.A_np if self.faithful_init else self.A_np / self.L
        self.W = [self._add("W", W0, t) for t in range(self.num_layers)]
        self.theta = [self._add("theta", self.theta_init, t) for t in range(self.num_layers)]

    def pre_threshold(self, t, y, x):
        return x + tf.matmul(self.residual(y, x), self.W[t])

    def layer(self, t, y, x, state):
        return soft_threshold(self.pre_threshold(t, y, x), self.theta[t]), state

    def get_config(self):
        return {**super().get_config(), "faithful_init": self.faithful_init}

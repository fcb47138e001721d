"""LISTA (Gregor & LeCun 2010) as in Open-L2O (paper Section 3.1; spec model_based §4.1).

Feed-forward, untied W, one shared B:

    x_1     = eta_{theta_0}(B y)
    x_{t+1} = eta_{theta_t}(B y + W_t x_t),   t >= 1

Init: ``B = A^T / L`` (shared by all layers, belongs to layer 0), ``W_t = I - A^T A / L``,
``theta_t = lam / L``.  At this initialisation LISTA is exactly ISTA with step 1/L and
threshold lam/L.  (The original's ``share_W`` option crashes at layer 2 and is not ported.)
"""
import keras
import numpy as np
import tensorflow as tf

from model_based.base import UnrolledModel
from model_based.shrinkage import soft_threshold


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class Lista(UnrolledModel):

    perf_training = True

    @classmethod
    def layer_flops(cls, m, n, batch):
        return 2 * batch * n * n      # the (n, n) W_t x_t (B y counted once, as before)

    def create_variables(self):
        At = self.A_np.T / self.L
        S = np.eye(self.n, dtype=np.float32) - At @ self.A_np
        self.B = self._add("B", At, 0)
        self.W = [None] + [self._add("W", S, t) for t in range(1, self.num_layers)]
        self.theta = [self._add("theta", self.theta_init, t) for t in range(self.num_layers)]

    def layer(self, t, y, x, state):
        By = tf.matmul(y, self.B, transpose_b=True)
        if t > 0:
            By = By + tf.matmul(x, self.W[t], transpose_b=True)
        return soft_threshold(By, self.theta[t]), state

"""LFISTA (learned FISTA; spec model_based §4.6).

With ``B = A^T / L`` (shared, layer 0), ``S = I - A^T A / L`` and the FISTA momentum
``m_k = (t_k - 1) / t_{k+1}`` (``t_{-1} = t_0 = 1``, ``t_{k+1} = (1 + sqrt(1 + 4 t_k^2))/2``):

    x_1     = eta_{theta_0}(B y)
    x_2     = eta_{theta_1}(B y + Wg_1 x_1)
    x_{t+1} = eta_{theta_t}(B y + Wg_t x_t + Wm_t x_{t-1}),   t >= 2

Init ``Wg_t = (1 + m_t) S``, ``Wm_t = -m_t S``, ``theta_t = lam / L``.  At initialisation this
is FISTA with step 1/L whose momentum sequence runs one step ahead of Beck-Teboulle's (an
original quirk; x_2 already uses m_1 = 0.2818).  The original also creates a ``Wm_1`` that no
layer uses; it is not created here (``Wm_t`` exists for t >= 2 only).
"""
import keras
import numpy as np
import tensorflow as tf

from model_based.base import UnrolledModel
from model_based.shrinkage import soft_threshold


def momentum_sequence(T):
    """``m_0 .. m_{T-1}`` with ``t_{-1} = t_0 = 1``."""
    ts = [1.0, 1.0]
    for _ in range(T):
        ts.append((1.0 + np.sqrt(1.0 + 4.0 * ts[-1] ** 2)) / 2.0)
    return [(ts[k + 1] - 1.0) / ts[k + 2] for k in range(T)]


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class Lfista(UnrolledModel):

    @classmethod
    def layer_flops(cls, m, n, batch):
        return 4 * batch * n * n      # Wg_t x_t and Wm_t x_{t-1}

    def create_variables(self):
        At = self.A_np.T / self.L
        S = np.eye(self.n, dtype=np.float32) - At @ self.A_np
        mom = momentum_sequence(self.num_layers)
        self.B = self._add("We", At, 0)
        self.Wg = [None] + [self._add("Wg", (1.0 + mom[t]) * S, t)
                            for t in range(1, self.num_layers)]
        self.Wm = [None, None] + [self._add("Wm", -mom[t] * S, t)
                                  for t in range(2, self.num_layers)]
        self.theta = [self._add("theta", self.theta_init, t) for t in range(self.num_layers)]

    def initial_state(self, y):
        return tf.zeros([tf.shape(y)[0], self.n], tf.float32)

    def layer(self, t, y, x, x_prev):
        z = tf.matmul(y, self.B, transpose_b=True)
        if t >= 1:
            z = z + tf.matmul(x, self.Wg[t], transpose_b=True)
        if t >= 2:
            z = z + tf.matmul(x_prev, self.Wm[t], transpose_b=True)
        return soft_threshold(z, self.theta[t]), x

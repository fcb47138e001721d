"""GLISTA (gated LISTA, Wu et al. ICLR 2020; spec model_based §4.7), Open-L2O semantics.

Per layer, with ``x_prev = x_t`` and ``c_prev`` the previous layer's shrunk-coordinate mask:

    g       = 1 + alpha_t relu(1 - relu(D_t |x_prev|))          (gain gate, "relu")

(``D_t |x|`` as the original, also in exp(-D|x|) and sigmoid(-D|x|); "inv" uses
``0.2 / (0.001 + |D_t x|)``.  A negative ``D_i`` makes the relu gate the constant
``1 + alpha_t`` for coordinate i, and it then no longer trains.)
    z       = g x_prev + W_t^T (y - A (g x_prev))
    x~, c   = shrink_ss(z, theta_t, q_t)
    o       = 1 - beta_t / (|x~ - x_prev| + 0.1) * P2,   P2 = theta_t (t = 0), theta_t c_prev
    x_{t+1} = o x~ + (1 - o) x_prev                             (inverse overshoot gate)

Learned: ``W_t`` (m, n) init ``A / L``, scalar ``theta_t = lam / L``, ``D_t`` (n,) init 1,
``alpha_t = beta_t = 5``.  ``gain`` chooses relu (default), inv, exp, sigm or none.  The
original GLISTA's per-coordinate theta and previous-layer theta in P2 are not used by
Open-L2O; we follow Open-L2O.

``alti`` = 0 starts every layer as a LISTA-CPSS layer with ``W = A/L`` (g = o = 1) and lets
training open the gates; ``run.sparse_recovery`` uses it for ``--preset=quick``, because
from 5 a fresh layer at initialisation is worse than none (o < 0 reverses small steps) and
short training cannot undo it.
"""
import keras
import numpy as np
import tensorflow as tf

from model_based.base import UnrolledModel
from model_based.shrinkage import shrink_ss, ss_keep_count, ss_percent
from open_l2o_tf.errors import UserError

GAINS = ("relu", "inv", "exp", "sigm", "none")


@keras.saving.register_keras_serializable(package="open_l2o_tf")
class Glista(UnrolledModel):

    support_selection = True

    def __init__(self, A, num_layers=16, lam=0.4, gain="relu", alti=5.0,
                 ss_q_per_layer=1.2, ss_maxq=13.0, **kwargs):
        if gain not in GAINS:
            raise UserError(f"GLISTA gain must be one of {GAINS}, got {gain!r}")
        self.gain, self.alti = gain, float(alti)
        self.ss_q_per_layer, self.ss_maxq = float(ss_q_per_layer), float(ss_maxq)
        super().__init__(A, num_layers, lam, **kwargs)
        self.keep = [ss_keep_count(self.n, ss_percent(t, self.ss_q_per_layer, self.ss_maxq))
                     for t in range(self.num_layers)]

    def create_variables(self):
        T = self.num_layers
        self.W = [self._add("W", self.A_np / self.L, t) for t in range(T)]
        self.theta = [self._add("theta", self.theta_init, t) for t in range(T)]
        self.D = [self._add("D_gain", np.ones(self.n, np.float32), t) for t in range(T)]
        self.alpha = [self._add("alti", self.alti, t) for t in range(T)]
        self.beta = [self._add("alti_over", self.alti, t) for t in range(T)]

    def initial_state(self, y):
        return tf.zeros([tf.shape(y)[0], self.n], tf.float32)

    def _gain(self, t, x):
        # As the original: D |x| (not |D x|) in relu/exp/sigm, so a negative D_i turns
        # coordinate i's gate into the constant 1 + alpha (relu) and its gradient vanishes;
        # only "inv" takes |D x|.
        d_abs = self.D[t] * tf.abs(x)
        if self.gain == "relu":
            return 1.0 + self.alpha[t] * tf.nn.relu(1.0 - tf.nn.relu(d_abs))
        if self.gain == "inv":
            return 1.0 + self.alpha[t] * 0.2 / (0.001 + tf.abs(self.D[t] * x))
        if self.gain == "exp":
            return 1.0 + self.alpha[t] * tf.exp(-d_abs)
        if self.gain == "sigm":
            return 1.0 + self.alpha[t] * tf.sigmoid(-d_abs)
        return tf.ones_like(x)

    def layer(self, t, y, x, c_prev):
        gx = self._gain(t, x) * x
        z = gx + tf.matmul(self.residual(y, gx), self.W[t])
        x_tilde, c = shrink_ss(z, self.theta[t], self.keep[t])
        p2 = self.theta[t] if t == 0 else self.theta[t] * c_prev
        o = 1.0 - self.beta[t] * p2 / (tf.abs(x_tilde - x) + 0.1)
        return o * x_tilde + (1.0 - o) * x, c

    def get_config(self):
        return {**super().get_config(), "gain": self.gain, "alti": self.alti,
                "ss_q_per_layer": self.ss_q_per_layer, "ss_maxq": self.ss_maxq}

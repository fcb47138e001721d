"""The base class of every unrolled network (model-based L2O, paper Section 3).

An ``UnrolledModel`` is a Keras model from measurements ``y`` (b, m) to the list of per-layer
estimates ``[x_1, ..., x_T]`` (each (b, n)); ``num_layers`` is a call argument, so one
model gives every depth, which is what progressive training and the per-layer test NMSE
need.  All T layers' variables are created up front (as the original, whose checkpoints
hold all of them); ``layer_variables(t)`` lists those first used by layer ``t`` (shared
variables, e.g. LISTA's B, belong to layer 0).  Variables are named ``<name>_<t+1>`` after
the original (``theta_3`` is layer 3's threshold).

Every iteration is a data-fidelity step followed by a prior (thresholding) step, as in the
classic algorithm it unrolls; subclasses implement ``initial_state`` and ``layer``.
Common constants (spec §1): ``L = 1.001 ||A||_2^2``, ``theta_init = lam / L``
(``lam`` = the original's ``model_lam``, default 0.4), ``x_0 = 0``.
"""
import keras
import numpy as np
import tensorflow as tf

from open_l2o_tf.errors import UserError, require_positive_int


def _as_matrix(value, name):
    array = np.asarray(value, np.float32)
    if array.ndim != 2:
        raise UserError(f"{name} must be a 2-D (m, n) matrix, got shape {array.shape}")
    return array


class UnrolledModel(keras.Model):
    """Base unrolled network.  Args: ``A`` (m, n), ``num_layers`` T, ``lam`` (initial
    threshold scale, ``theta_init = lam / L``)."""

    def __init__(self, A, num_layers=16, lam=0.4, **kwargs):
        super().__init__(**kwargs)
        self.A_np = _as_matrix(A, "A")
        self.m, self.n = self.A_np.shape
        self.num_layers = require_positive_int(int(num_layers), "num_layers")
        self.lam = float(lam)
        self.L = float(1.001 * np.linalg.norm(self.A_np.astype(np.float64), 2) ** 2)
        self.theta_init = self.lam / self.L
        self.A = tf.constant(self.A_np)
        self._layer_vars = [[] for _ in range(self.num_layers)]
        self.create_variables()
        self.built = True

    # -- variables -------------------------------------------------------------------
    def create_variables(self):
        raise NotImplementedError

    def _add(self, name, value, layer):
        value = np.asarray(value, np.float32)
        var = self.add_weight(name=f"{name}_{layer + 1}" if layer is not None else name,
                              shape=value.shape,
                              initializer=keras.initializers.Constant(value),
                              trainable=True)
        self._layer_vars[layer or 0].append(var)
        return var

    def layer_variables(self, t):
        """The variables first used by layer ``t`` (0-based)."""
        return list(self._layer_vars[t])

    # -- forward ---------------------------------------------------------------------
    def initial_state(self, y):
        """Side state carried between layers (e.g. LAMP's v, LFISTA's x_{t-1})."""
        del y
        return ()

    def layer(self, t, y, x, state):
        """One iteration: returns ``(x_{t+1}, state)``."""
        raise NotImplementedError

    def call(self, y, num_layers=None, training=False):
        del training
        T = self.num_layers if num_layers is None else int(num_layers)
        if not 1 <= T <= self.num_layers:
            raise UserError(f"num_layers must be in 1..{self.num_layers}, got {num_layers}")
        y = tf.convert_to_tensor(y, tf.float32)
        if y.shape.rank != 2 or y.shape[-1] != self.m:
            raise UserError(f"y must have shape (batch, {self.m}), got {tuple(y.shape)}")
        x = tf.zeros([tf.shape(y)[0], self.n], tf.float32)
        state = self.initial_state(y)
        outputs = []
        for t in range(T):
            x, state = self.layer(t, y, x, state)
            outputs.append(x)
        return outputs

    # -- helpers ---------------------------------------------------------------------
    def residual(self, y, x):
        """``y - A x`` for a batch (rows)."""
        return y - tf.matmul(x, self.A, transpose_b=True)

    def get_config(self):
        config = super().get_config()
        config.update(A=self.A_np.tolist(), num_layers=self.num_layers, lam=self.lam)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

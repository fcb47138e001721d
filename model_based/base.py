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
    threshold scale, ``theta_init = lam / L``).

    What the command lines, the trainer and ``run.perf`` need to know about a model is
    asked from its class (never from its name):

    * ``needs_W``: the constructor needs the data set's analytic weight ``W`` (ALISTA);
    * ``support_selection``: the layers use support selection (top-k), so the trainer runs
      without XLA by default (XLA's top-k on CPU is about 4x slower than TF's);
    * ``lasso_only``: ``lam`` is the Lasso weight and the model is trained on the Lasso
      loss only (StepLISTA; which commands take a model is its registry entry's
      ``commands``, ``model_based/__init__.py``);
    * :meth:`layer_flops`: the forward FLOPs of one layer (``run.perf``);
    * ``perf_training``: ``run.perf --what=training`` times it when no ``--models`` are
      given (one model per kind of training step: ALISTA, analytic W and support
      selection; LISTA-CPSS, learned W and support selection; LISTA, plain layers);
    * every other constructor argument is an option :func:`model_based.factory.build_model`
      passes when the caller has it (``faithful_init``, ``sigma2``, ``alti``, ``gain``, ...).
    """

    needs_W = False
    support_selection = False
    lasso_only = False
    perf_training = False

    @classmethod
    def layer_flops(cls, m, n, batch):
        """Forward FLOPs of one layer on a batch: two (m, n) matmuls by default."""
        return 4 * batch * m * n

    def __init__(self, A, num_layers=16, lam=0.4, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = require_positive_int(int(num_layers), "num_layers")
        self.lam = float(lam)
        self._set_matrix(_as_matrix(A, "A"))
        self._layer_vars = [[] for _ in range(self.num_layers)]
        self.create_variables()
        # A is stored with the model as a non-trainable weight (not as JSON in the config)
        self.A_weight = self._add_fixed("A_matrix", self.A_np)
        self.built = True

    def _set_matrix(self, A):
        """Sets ``A`` and the constants derived from it (``L``, ``theta_init``, ...)."""
        self.A_np = np.asarray(A, np.float32)
        self.m, self.n = self.A_np.shape
        self.L = float(1.001 * np.linalg.norm(self.A_np.astype(np.float64), 2) ** 2)
        self.theta_init = self.lam / self.L if self.L > 0 else 0.0
        self.A = tf.constant(self.A_np)
        self.derive_constants()

    def derive_constants(self):
        """Hook: constants a subclass derives from ``A`` (recomputed after loading)."""

    def _add_fixed(self, name, value):
        value = np.asarray(value, np.float32)
        return self.add_weight(name=name, shape=value.shape,
                               initializer=keras.initializers.Constant(value),
                               trainable=False)

    def fixed_weights(self):
        """``{name: (variable, setter)}`` of the non-trainable matrices saved with the model;
        the setter refreshes the constants computed from them after loading."""
        return {"A_matrix": (self.A_weight, self._set_matrix)}

    def refresh_fixed(self):
        """Recomputes ``A`` (and ``L``, ...) from the stored non-trainable matrices."""
        for variable, setter in self.fixed_weights().values():
            setter(np.asarray(variable.numpy()))

    def load_own_variables(self, store):
        """Keras loading: ``from_config`` builds around a placeholder ``A``; after the saved
        weights are in, ``A`` and every constant derived from it are set from them."""
        super().load_own_variables(store)
        self.refresh_fixed()

    def set_weights(self, weights):
        super().set_weights(weights)
        self.refresh_fixed()

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

    def run_layers(self, y, x, state, start, stop):
        """Layers ``start .. stop-1`` from ``(x_start, state_start)``; returns
        ``(outputs, state)``.  ``(x_t, state_t)`` is everything layer ``t`` needs besides
        ``y`` (LFISTA: ``x_{t-1}``, LAMP: ``v_{t-1}``, GLISTA: the previous shrink mask), so
        the progressive trainer caches it once per stage-1 for the fixed first ``t`` layers.
        ``start = 0`` takes ``x_0 = 0`` and :meth:`initial_state` when ``x``/``state`` are
        None; ``run_layers(y, None, None, 0, T)[0] == call(y, num_layers=T)``."""
        y = tf.convert_to_tensor(y, tf.float32)
        if x is None:
            x = tf.zeros([tf.shape(y)[0], self.n], tf.float32)
            state = self.initial_state(y)
        outputs = []
        for t in range(start, stop):
            x, state = self.layer(t, y, x, state)
            outputs.append(x)
        return outputs, state

    # -- helpers ---------------------------------------------------------------------
    def residual(self, y, x):
        """``y - A x`` for a batch (rows)."""
        return y - tf.matmul(x, self.A, transpose_b=True)

    def get_config(self):
        config = super().get_config()
        config.update(m=self.m, n=self.n, num_layers=self.num_layers, lam=self.lam)
        return config

    @classmethod
    def from_config(cls, config):
        """Builds the model around a placeholder ``A`` of shape (m, n); loading the saved
        weights then sets the real ``A`` (:meth:`load_own_variables`).  Configs of older
        files that hold ``A`` as a list still load."""
        config = dict(config)
        m, n = config.pop("m", None), config.pop("n", None)
        if "A" not in config:
            config["A"] = placeholder_matrix(m, n)
        return cls(**config)


def placeholder_matrix(m, n):
    """A well-conditioned stand-in of shape (m, n) until the saved matrix is loaded."""
    return np.eye(int(m), int(n), dtype=np.float32)

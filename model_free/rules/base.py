"""The learned-optimizer interface (model-free L2O, paper Section 4).

A coordinate-wise learned optimizer is a Keras model with

    state          = initial_state(params)
    steps, state'  = update(grads, state, params=None)        params' = params + steps

over a list of parameter tensors of any shapes (as ``learned_optimization``'s init/update
on a state).  All coordinates of all tensors are flattened into ONE ``(N, features)`` batch
for the network, so one call per optimizer step serves every tensor.  States are nested
structures of ``(N, ...)`` tensors, usable as ``tf.while_loop`` loop variables.
"""
import keras
import numpy as np
import tensorflow as tf

from model_free.meta.recipe import MetaRecipe
from model_free.rules.initial_draw import (  # noqa: F401  (re-exported)
    INITIAL_DRAW_OPTIONS, initializers)


def flatten(tensors):
    """Concatenates a list of tensors into one ``(N, 1)`` column."""
    return tf.concat([tf.reshape(t, [-1, 1]) for t in tensors], axis=0)


def unflatten(column, like):
    """Splits an ``(N, 1)`` column back into tensors shaped like ``like``."""
    sizes = [int(np.prod(t.shape)) for t in like]
    parts = tf.split(tf.reshape(column, [-1]), sizes)
    return [tf.reshape(p, t.shape) for p, t in zip(parts, like)]


def num_coordinates(params):
    return int(sum(int(np.prod(p.shape)) for p in params))


class SonnetLSTM(keras.layers.Layer):
    """An LSTM cell with Sonnet-1 semantics (gate order [i, j, f, o] on ``concat([x, h])``,
    forget bias 1.0 added at run time), so the original Open-L2O weights load exactly:
    ``c' = sigmoid(f + 1) c + sigmoid(i) tanh(j)``, ``h' = tanh(c') sigmoid(o)``.

    Initialisation as Sonnet 1's ``snt.LSTM`` (the original's networks.py:193-197 builds
    its cores with no initializers): ``w_gates`` and ``b_gates`` each drawn from a
    truncated normal with stddev ``1/sqrt(input_dim + units)``, independently (two
    ``tf.get_variable`` calls, each a fresh draw).  ``tied_init=True`` keeps this class's
    behaviour before that was fixed: ONE unseeded Keras 3 initializer served both weights,
    and Keras 3 fixes an unseeded initializer's seed when it is built, so ``b_gates`` was a
    copy of the first row of ``w_gates`` (the input's row, for L2O-DM the gradient's)."""

    def __init__(self, units, input_dim, tied_init=False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.input_dim = int(units), int(input_dim)
        self.tied_init = bool(tied_init)
        std = 1.0 / np.sqrt(self.input_dim + self.units)
        draw = initializers(lambda: keras.initializers.TruncatedNormal(stddev=std),
                            self.tied_init)
        w_init, b_init = draw(), draw()
        self.w_gates = self.add_weight(name="w_gates", shape=(self.input_dim + self.units,
                                                              4 * self.units),
                                       initializer=w_init)
        self.b_gates = self.add_weight(name="b_gates", shape=(4 * self.units,),
                                       initializer=b_init)
        self.built = True

    def call(self, x, state):
        h, c = state
        gates = tf.matmul(tf.concat([x, h], axis=1), self.w_gates) + self.b_gates
        i, j, f, o = tf.split(gates, 4, axis=1)
        c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(j)
        h = tf.tanh(c) * tf.sigmoid(o)
        return h, (h, c)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "input_dim": self.input_dim,
                "tied_init": self.tied_init}


class LearnedOptimizer(keras.Model):
    """Base class; subclasses implement ``initial_state`` and ``update``.

    What the command lines need to know about an optimizer is asked from its class:
    :meth:`for_problem` builds it for a problem family, :meth:`meta_training` is its
    meta-training recipe, ``original_selection`` is the ``(evaluation period in episodes,
    evaluation problems)`` of the original's model selection
    (``--model_selection=original`` and ``last_truncation``).
    """

    original_selection = (100, 20)

    @classmethod
    def for_problem(cls, synthetic, **options):
        """The optimizer the commands meta-train on a synthetic problem (quadratic, Lasso,
        Rastrigin; ``synthetic=True``) or a neural network (``False``).  Default:
        ``cls(**options)`` (``options``: constructor arguments a command adds, e.g.
        ``tied_lstm_init``)."""
        del synthetic
        return cls(**options)

    @classmethod
    def meta_training(cls, opt, *, seed=0, horizons=None, meta_lr=None):
        """The recipe: a :class:`model_free.meta.recipe.MetaRecipe` (or a dict of its fields)
        for meta-training ``opt`` (built by :meth:`for_problem`), e.g. ``meta_objective``,
        ``meta_optimizer``, ``clip_value``, ``carry_state``, ``curriculum``, ``imitation``.
        ``seed``: the run's seed; ``horizons``: a curriculum's horizons (None: its
        default); ``meta_lr``: the ``--meta_lr`` value (None: the recipe's rate).
        Default: the recipe's defaults (Adam, the sum of losses) at rate ``meta_lr``."""
        del opt, seed, horizons
        return MetaRecipe().replace(meta_lr=meta_lr)

    def initial_state(self, params):
        raise NotImplementedError

    def seeded_initial_state(self, params, seed):
        """:meth:`initial_state` with any random draws taken from the stateless ``seed``
        (int32 ``[2]``); the meta-trainer calls it so that a resumed run draws as an
        uninterrupted one.  Default (deterministic states): ``initial_state(params)``."""
        del seed
        return self.initial_state(params)

    def update(self, grads, state, params=None, training=False):
        """Default for coordinate-wise optimizers: every coordinate of every tensor through
        :meth:`network` in one batched call, ``(N, 1)`` in and out."""
        del params, training
        step, state = self.network(flatten(grads), state)
        return unflatten(step, grads), state

    def network(self, g, state):
        """``(flat_steps (N, 1), state)`` from the flat gradients ``g`` (N, 1)."""
        raise NotImplementedError

    def call(self, inputs):  # Keras needs a call; the interface is ``update``.
        grads, state = inputs
        return self.update(grads, state)

"""Minimax problems of Twin-L2O (Shen et al. ICLR 2021; spec model_free §7):
``min_u max_v f(u, v)`` for a batch of instances.

``params = [u, v]``, each ``(B, d)``; ``instance_losses`` is ``f(u, v)`` per instance.

* ``Saddle``:         ``f = a u^2 - b v^2``                       (saddle point 0)
* ``RotatedSaddle``:  ``f = a u^2 - b v^2 + 2 u v``               (saddle point 0)
* ``Seesaw``:         ``f = -b v sin(a pi u)``     (saddle points u = k / a, v = 0)
* ``MatrixGame``:     ``f = u^T A v``, A_ij ~ U(0.5, 1) kept with probability ``p``
  (1.0 or 0.5), d = 5                                           (saddle point 0)

(a, b) are drawn uniformly from one of the original's seven toy ranges (``ab_range``
1..7, table below); starts u, v ~ U(-0.5, 0.5).  ``saddle_distance`` is the per-instance
distance the original's model selection and tests use: ``||u||_1^2 + ||v||_1^2``, and for
the seesaw ``|(||u||_1 - k/a)|^2 + ||v||_1^2`` with k the nearest integer to ``a ||u||_1``.
"""
import math

import tensorflow as tf

from open_l2o_tf.errors import UserError
from open_l2o_tf.optimizees.base import Optimizee, as_seed, split_seed

# The ranges of (a, b) in the original's seven toy data files.
AB_RANGES = {1: ((0.9, 1.0), (0.9, 1.0)), 2: ((0.0, 1.0), (0.9, 1.0)),
             3: ((0.0, 3.5), (0.9, 1.0)), 4: ((0.0, 5.0), (0.9, 1.0)),
             5: ((0.9, 1.0), (0.0, 1.0)), 6: ((0.0, 5.0), (0.0, 1.0)),
             7: ((0.0, 5.0), (0.0, 2.0))}


def _l1_squared(t):
    return tf.square(tf.reduce_sum(tf.abs(t), -1))


class _Minimax(Optimizee):
    def __init__(self, dim=1, batch_size=128, ab_range=1):
        if ab_range not in AB_RANGES:
            raise UserError(f"ab_range must be one of {sorted(AB_RANGES)}, got {ab_range!r}")
        self.dim, self.batch_size, self.ab_range = int(dim), int(batch_size), int(ab_range)

    def sample_instance(self, seed, batch_size=None):
        b = batch_size or self.batch_size
        (a_lo, a_hi), (b_lo, b_hi) = AB_RANGES[self.ab_range]
        s1, s2 = split_seed(seed)
        return {"a": tf.random.stateless_uniform([b, 1], s1, a_lo, a_hi),
                "b": tf.random.stateless_uniform([b, 1], s2, b_lo, b_hi)}

    def init_params(self, seed, instance):
        b = next(iter(instance.values())).shape[0]
        s1, s2 = split_seed(seed)
        return [tf.random.stateless_uniform([b, self.dim], s1, -0.5, 0.5),
                tf.random.stateless_uniform([b, self.dim], s2, -0.5, 0.5)]

    def saddle_distance(self, params, instance):
        u, v = params
        return _l1_squared(u) + _l1_squared(v)

    def gradients(self, params, instance):
        """``[df/du, df/dv]`` per instance (of the summed loss; instances are independent),
        without meta-gradient."""
        with tf.GradientTape() as tape:
            tape.watch(params)
            total = tf.reduce_sum(self.instance_losses(params, instance))
        return [tf.stop_gradient(g) for g in tape.gradient(total, params)]


class Saddle(_Minimax):
    name = "saddle"

    def instance_losses(self, params, instance, batch=None):
        u, v = params
        return tf.reduce_sum(instance["a"] * u * u - instance["b"] * v * v, -1)


class RotatedSaddle(_Minimax):
    name = "rotated_saddle"

    def instance_losses(self, params, instance, batch=None):
        u, v = params
        return tf.reduce_sum(instance["a"] * u * u - instance["b"] * v * v + 2.0 * u * v, -1)


class Seesaw(_Minimax):
    name = "seesaw"

    def instance_losses(self, params, instance, batch=None):
        u, v = params
        return tf.reduce_sum(-instance["b"] * v * tf.sin(math.pi * instance["a"] * u), -1)

    def saddle_distance(self, params, instance):
        u, v = params
        a = tf.maximum(instance["a"][:, 0], 1e-6)
        norm = tf.reduce_sum(tf.abs(u), -1)
        k = tf.round(a * norm)
        return tf.square(norm - k / a) + _l1_squared(v)


class MatrixGame(_Minimax):
    name = "matrix_game"

    def __init__(self, dim=5, batch_size=128, keep_probability=1.0):
        super().__init__(dim, batch_size)
        if not 0.0 < keep_probability <= 1.0:
            raise UserError(f"keep_probability must be in (0, 1], got {keep_probability}")
        self.keep_probability = float(keep_probability)

    def sample_instance(self, seed, batch_size=None):
        b = batch_size or self.batch_size
        s1, s2 = split_seed(as_seed(seed))
        values = tf.random.stateless_uniform([b, self.dim, self.dim], s1, 0.5, 1.0)
        keep = tf.cast(tf.random.stateless_uniform([b, self.dim, self.dim], s2)
                       < self.keep_probability, tf.float32)
        return {"M": values * keep}

    def instance_losses(self, params, instance, batch=None):
        u, v = params
        return tf.einsum("bi,bij,bj->b", u, instance["M"], v)

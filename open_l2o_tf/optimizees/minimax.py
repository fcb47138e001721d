"""Minimax problems of Twin-L2O (Shen et al. ICLR 2021; spec model_free §7).

``params = [x, y]`` (each (B, d)); ``instance_losses`` is ``f(x, y)``, minimised over x and
maximised over y.  Families: ``Saddle`` ``f = x^2 - y^2`` (per coordinate, summed),
``RotatedSaddle`` ``f = a x^2 - a y^2 + b x y``, ``Seesaw`` ``f = -v sin(pi u)`` type toy
(``f = -y sin(pi x)``), ``MatrixGame`` ``f = x^T M y`` with ``M`` ~ N(0, 1).  Twin-L2O itself
is not implemented yet; these serve the classic baselines and tests.
"""
import math

import tensorflow as tf

from open_l2o_tf.optimizees.base import Optimizee, as_seed, split_seed


class _Minimax(Optimizee):
    def __init__(self, dim=1, batch_size=128):
        self.dim, self.batch_size = int(dim), int(batch_size)

    def sample_instance(self, seed, batch_size=None):
        b = batch_size or self.batch_size
        return {"a": tf.random.stateless_uniform([b, 1], as_seed(seed), 0.5, 1.5)}

    def init_params(self, seed, instance):
        b = next(iter(instance.values())).shape[0]
        s1, s2 = split_seed(seed)
        return [tf.random.stateless_normal([b, self.dim], s1),
                tf.random.stateless_normal([b, self.dim], s2)]


class Saddle(_Minimax):
    name = "saddle"

    def instance_losses(self, params, instance, batch=None):
        x, y = params
        return tf.reduce_sum(x * x - y * y, -1)


class RotatedSaddle(_Minimax):
    name = "rotated_saddle"

    def instance_losses(self, params, instance, batch=None):
        x, y = params
        a = instance["a"]
        return tf.reduce_sum(a * x * x - a * y * y + 2.0 * x * y, -1)


class Seesaw(_Minimax):
    name = "seesaw"

    def instance_losses(self, params, instance, batch=None):
        x, y = params
        return tf.reduce_sum(-y * tf.sin(math.pi * x), -1)


class MatrixGame(_Minimax):
    name = "matrix_game"

    def sample_instance(self, seed, batch_size=None):
        b = batch_size or self.batch_size
        return {"M": tf.random.stateless_normal([b, self.dim, self.dim], as_seed(seed))}

    def instance_losses(self, params, instance, batch=None):
        x, y = params
        return tf.einsum("bi,bij,bj->b", x, instance["M"], y)

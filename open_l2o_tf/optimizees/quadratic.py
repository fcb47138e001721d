"""The L2O-DM quadratic family (spec model_free §9.1): ``f_i(x) = ||W_i x_i - y_i||^2``
(no 1/2), ``W_i`` (n, n) and ``y_i`` ~ U[0, 1), ``x_0 ~ N(0, 0.01^2)``; 128 instances of n = 10.
"""
import tensorflow as tf

from open_l2o_tf.optimizees.base import Optimizee, as_seed, split_seed


class Quadratic(Optimizee):
    name = "quadratic"

    def __init__(self, dim=10, batch_size=128):
        self.dim, self.batch_size = int(dim), int(batch_size)

    def sample_instance(self, seed, batch_size=None):
        b = batch_size or self.batch_size
        s1, s2 = split_seed(seed)
        return {"W": tf.random.stateless_uniform([b, self.dim, self.dim], s1),
                "y": tf.random.stateless_uniform([b, self.dim], s2)}

    def init_params(self, seed, instance):
        b = instance["y"].shape[0]
        return [0.01 * tf.random.stateless_normal([b, self.dim], as_seed(seed))]

    def instance_losses(self, params, instance, batch=None):
        r = tf.einsum("bij,bj->bi", instance["W"], params[0]) - instance["y"]
        return tf.reduce_sum(tf.square(r), axis=-1)

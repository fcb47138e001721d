"""The generalized Rastrigin family (paper Eqs. (20)-(21); spec model_free §9.3).

``f(x) = 1/2 ||A x - b||^2 - alpha c^T cos(2 pi x) + alpha n``, ``alpha = 10``, with
``A`` (n, n), ``b``, ``c`` and the starting point ``x_0`` all ~ N(0, 1) (the distribution
that gives the paper's starting values 23 (n = 2) and 155 (n = 10)).  A per-instance lower
bound is ``alpha (n - ||c||_1)``.  The paper's protocol uses fixed pools: 1,280 training
and 128 test triplets (``pool``), each test triplet with 10 random starts
(``tile_starts``).
"""
import tensorflow as tf

from open_l2o_tf.optimizees.base import Optimizee, as_seed, split_seed


class Rastrigin(Optimizee):
    name = "rastrigin"

    def __init__(self, n=2, batch_size=128, alpha=10.0):
        self.n, self.batch_size, self.alpha = int(n), int(batch_size), float(alpha)

    def sample_instance(self, seed, batch_size=None):
        b = batch_size or self.batch_size
        s1, s2, s3 = split_seed(seed, 3)
        return {"A": tf.random.stateless_normal([b, self.n, self.n], s1),
                "b": tf.random.stateless_normal([b, self.n], s2),
                "c": tf.random.stateless_normal([b, self.n], s3)}

    def init_params(self, seed, instance):
        b = instance["b"].shape[0]
        return [tf.random.stateless_normal([b, self.n], as_seed(seed))]

    @staticmethod
    def tile_starts(instance, starts):
        """Repeats every instance ``starts`` times (instance-major)."""
        return {k: tf.repeat(v, starts, axis=0) for k, v in instance.items()}

    def instance_losses(self, params, instance, batch=None):
        x = params[0]
        r = tf.einsum("bij,bj->bi", instance["A"], x) - instance["b"]
        return (0.5 * tf.reduce_sum(tf.square(r), -1)
                - self.alpha * tf.reduce_sum(instance["c"] * tf.cos(2.0 * 3.141592653589793 * x), -1)
                + self.alpha * self.n)

    def lower_bound(self, instance):
        return self.alpha * (self.n - tf.reduce_sum(tf.abs(instance["c"]), -1))

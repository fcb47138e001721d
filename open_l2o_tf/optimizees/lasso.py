"""Lasso instances ``f_i(x) = 1/2 ||A x_i - y_i||^2 + lam ||x_i||_1`` (paper Fig. 6).

Two samplers (spec model_free §9.2):

* ``from_data(A, y)``: the data set's shared ``A`` (m, n) and a pool of measurements ``y``
  (the model-based Lasso data, so model-free and model-based runs see the same problems);
  ``sample_instance`` draws ``batch_size`` rows of the pool (``fixed=True``: always the
  pool's first ``batch_size`` rows, the original's ``problems.lasso_fixed``, one fixed batch).
* without data: the original model-free generator, ``W_i`` (m, n) and ``y_i`` ~ U[0, 1).

``x_0 = 0`` by default (``init_scale=0.01`` gives the original's N(0, 0.01^2)).
"""
import numpy as np
import tensorflow as tf

from open_l2o_tf.optimizees.base import Optimizee, as_seed, split_seed


class Lasso(Optimizee):
    name = "lasso"

    def __init__(self, m=25, n=50, lam=0.005, batch_size=128, A=None, y_pool=None,
                 init_scale=0.0, fixed=False):
        self.m, self.n, self.lam, self.batch_size = int(m), int(n), float(lam), int(batch_size)
        self.fixed = bool(fixed)
        if self.fixed and (y_pool is None or len(y_pool) < self.batch_size):
            raise ValueError(f"fixed=True needs a pool of at least batch_size "
                             f"{self.batch_size} measurements")
        self.A = None if A is None else tf.constant(np.asarray(A, np.float32))
        self.y_pool = None if y_pool is None else tf.constant(np.asarray(y_pool, np.float32))
        self.init_scale = float(init_scale)

    @classmethod
    def from_data(cls, A, y_pool, lam=0.005, batch_size=128, **kwargs):
        A = np.asarray(A, np.float32)
        return cls(A.shape[0], A.shape[1], lam, batch_size, A=A, y_pool=y_pool, **kwargs)

    def sample_instance(self, seed, batch_size=None):
        b = batch_size or self.batch_size
        s1, s2 = split_seed(seed)
        if self.y_pool is not None and self.fixed:
            return {"y": self.y_pool[:b]}
        if self.y_pool is not None:
            idx = tf.random.stateless_uniform([b], s1, 0, tf.shape(self.y_pool)[0], tf.int32)
            return {"y": tf.gather(self.y_pool, idx)}
        return {"W": tf.random.stateless_uniform([b, self.m, self.n], s1),
                "y": tf.random.stateless_uniform([b, self.m], s2)}

    def init_params(self, seed, instance):
        b = instance["y"].shape[0]
        if self.init_scale == 0.0:
            return [tf.zeros([b, self.n])]
        return [self.init_scale * tf.random.stateless_normal([b, self.n], as_seed(seed))]

    def instance_losses(self, params, instance, batch=None):
        x = params[0]
        if "W" in instance:
            r = tf.einsum("bmn,bn->bm", instance["W"], x) - instance["y"]
        else:
            r = tf.matmul(x, self.A, transpose_b=True) - instance["y"]
        return 0.5 * tf.reduce_sum(tf.square(r), -1) + self.lam * tf.reduce_sum(tf.abs(x), -1)

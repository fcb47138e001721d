"""Optimizee families: plain TF functions of a list of parameter tensors."""
from open_l2o_tf.optimizees.base import Optimizee, as_seed, split_seed

__all__ = ["Optimizee", "as_seed", "split_seed"]

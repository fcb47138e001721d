"""open-l2o-tf: the shared core of the toolbox.

Optimizees, data generation and loading, metrics, classic baselines, logging and
TensorBoard, plotting and the paper's reference numbers.  Model-based (unrolled)
networks live in :mod:`model_based`, learned update rules in :mod:`model_free`, and the
absl-flag command lines in :mod:`run`.
"""
from open_l2o_tf.errors import UserError

__version__ = "0.1.0"
__all__ = ["UserError", "__version__"]

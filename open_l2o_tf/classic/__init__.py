"""Classic baselines, batched over problem instances and run inside tf.function.

Importing the package registers them (``open_l2o_tf.registry``, kind ``"classic"``).
"""
from open_l2o_tf import registry as _registry
from open_l2o_tf.classic.first_order import adam, gd, rmsprop, sgd
from open_l2o_tf.classic.ista_fista import (fista, fista_from, ista, lasso_fstar,
                                            lipschitz_constant, soft_threshold)
from open_l2o_tf.classic.line_search import armijo_step, gd_line_search, nag_line_search
from open_l2o_tf.classic.run_and_inspect import run_and_inspect
from open_l2o_tf.classic.transforms import (GradientTransformation, apply_updates, chain,
                                            identity, run_optimizer, scale, step_seed)

__all__ = [
    "GradientTransformation", "adam", "apply_updates", "armijo_step", "chain", "fista",
    "fista_from", "gd", "gd_line_search", "identity", "ista", "lasso_fstar",
    "lipschitz_constant", "nag_line_search", "rmsprop", "run_and_inspect", "run_optimizer",
    "scale", "sgd", "soft_threshold", "step_seed",
]

for _name, _target in (
        ("ista", "open_l2o_tf.classic.ista_fista:ista"),
        ("fista", "open_l2o_tf.classic.ista_fista:fista"),
        ("gd", "open_l2o_tf.classic.first_order:gd"),
        ("sgd", "open_l2o_tf.classic.first_order:sgd"),
        ("adam", "open_l2o_tf.classic.first_order:adam"),
        ("rmsprop", "open_l2o_tf.classic.first_order:rmsprop"),
        ("gd_ls", "open_l2o_tf.classic.line_search:gd_line_search"),
        ("nag_ls", "open_l2o_tf.classic.line_search:nag_line_search"),
        ("oracle", "open_l2o_tf.classic.run_and_inspect:run_and_inspect"),
        ("gda", "open_l2o_tf.classic.gda:alternating_gda"),
        ("adam_gda", "open_l2o_tf.classic.gda:alternating_gda"),
):
    _registry.register("classic", _name, _target)

"""Classic baselines, batched over problem instances and run inside tf.function.

Importing the package registers them (``open_l2o_tf.registry``, kind ``"classic"``, with
the ``commands`` that run them as baselines).
"""
import importlib

from open_l2o_tf import registry as _registry

# the package's names, imported on first use (so registering the names costs no TensorFlow
# import: the commands check their flags before TensorFlow is imported)
_EXPORTS = {
    "first_order": ("adam", "gd", "rmsprop", "sgd"),
    "ista_fista": ("fista", "fista_from", "ista", "lasso_fstar", "lipschitz_constant",
                   "soft_threshold"),
    "line_search": ("armijo_step", "gd_line_search", "nag_line_search"),
    "named": ("line_search_names", "make_transform", "proximal_names", "transform_names"),
    "oracle": ("run_and_inspect",),
    "transforms": ("GradientTransformation", "apply_updates", "chain", "identity",
                   "run_optimizer", "scale", "step_seed"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
# a submodule named like a name it exports would shadow it once imported (the import
# system sets the package attribute to the module)
assert not set(_EXPORTS) & set(_MODULE_OF), set(_EXPORTS) & set(_MODULE_OF)
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


_LASSO_RASTRIGIN_NN = ("lasso", "rastrigin", "nn_training")
for _name, _target, _info in (
        # proximal methods f(A, y, lam, num_iterations, step=...) -> (x, curve): run.lasso
        # runs every entry with proximal=True (classic.named; --ista_step sets the step)
        ("ista", "open_l2o_tf.classic.ista_fista:ista",
         dict(commands=("lasso",), proximal=True)),
        ("fista", "open_l2o_tf.classic.ista_fista:fista",
         dict(commands=("lasso",), proximal=True)),
        # transform=True: f(learning_rate, **options) -> GradientTransformation, built by
        # name in every command (classic.named.make_transform; --lr applies)
        ("gd", "open_l2o_tf.classic.first_order:gd", dict(commands=("lasso",), transform=True)),
        ("sgd", "open_l2o_tf.classic.first_order:sgd",
         dict(commands=("nn_training",), transform=True)),
        ("adam", "open_l2o_tf.classic.first_order:adam",
         dict(commands=_LASSO_RASTRIGIN_NN, transform=True)),
        ("rmsprop", "open_l2o_tf.classic.first_order:rmsprop",
         dict(commands=_LASSO_RASTRIGIN_NN, quick=("lasso", "rastrigin"), transform=True)),
        # line-search methods f(loss_fn, params, num_steps, initial_step) -> (x, curve):
        # run.rastrigin runs every entry with line_search=True (classic.named; and
        # --line_search_scope applies)
        ("gd_ls", "open_l2o_tf.classic.line_search:gd_line_search",
         dict(commands=("rastrigin",), line_search=True)),
        ("nag_ls", "open_l2o_tf.classic.line_search:nag_line_search",
         dict(commands=("rastrigin",), line_search=True)),
        ("oracle", "open_l2o_tf.classic.oracle:run_and_inspect",
         dict(commands=("rastrigin",))),
        ("gda", "open_l2o_tf.classic.gda:alternating_gda", dict(commands=("minimax",))),
        ("adam_gda", "open_l2o_tf.classic.gda:alternating_gda", dict(commands=("minimax",))),
):
    _registry.register("classic", _name, _target, **_info)

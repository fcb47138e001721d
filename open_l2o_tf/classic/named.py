"""Classic first-order baselines by registry name: the entries registered with
``transform=True`` (GD, SGD, Adam, RMSProp and any a researcher adds in one line) are
factories ``f(learning_rate, **options) -> GradientTransformation``; the commands build
them here instead of naming each, so a new one runs in every command it serves::

    registry.register("classic", "sign_gd", "my_pkg.sign:sign_gd", transform=True,
                      commands=("lasso", "rastrigin", "nn_training"))

This module imports no TensorFlow (the commands check ``--lr`` before importing it); the
factory's module is imported by :func:`make_transform`.
"""
import inspect

from open_l2o_tf import registry


def transform_names(command):
    """The classic names ``command`` serves that are learning-rate transforms (``--lr``
    applies to these)."""
    return registry.serving(command, ("classic",), transform=True)


def line_search_names(command):
    """The classic names ``command`` serves that are line-search methods (registered with
    ``line_search=True``: ``f(loss_fn, params, num_steps, initial_step=...) -> (x,
    curve)``, as :func:`open_l2o_tf.classic.line_search.gd_line_search`)."""
    return registry.serving(command, ("classic",), line_search=True)


def proximal_names(command):
    """The classic names ``command`` serves that are proximal Lasso solvers (registered
    with ``proximal=True``: ``f(A, y, lam, num_iterations, step=...) -> (x, curve)``, as
    :func:`open_l2o_tf.classic.ista_fista.ista`)."""
    return registry.serving(command, ("classic",), proximal=True)


def make_transform(name, learning_rate, **options):
    """The transform of entry ``name`` at ``learning_rate``; of ``options`` (e.g.
    ``initial_accumulator`` of RMSProp) only those its factory names (not a ``**kwargs``)
    are passed, so one call serves every entry."""
    if not registry.info("classic", name).get("transform"):
        raise ValueError(f"classic {name!r} is not registered as a transform "
                         f"(transform=True)")
    factory = registry.get("classic", name)
    named = {key for key, p in inspect.signature(factory).parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return factory(learning_rate, **{k: v for k, v in options.items() if k in named})

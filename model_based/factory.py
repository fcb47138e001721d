"""Builds an unrolled model by registry name; what varies between models is asked from the
model class (:class:`model_based.base.UnrolledModel`'s ``needs_W`` and its constructor's
signature), so a new model needs no line here."""
import inspect

from open_l2o_tf import registry
from open_l2o_tf.errors import UserError
from open_l2o_tf.keras_files import check_unrolled_file


def model_class(name):
    """The class registered as model ``name`` (:class:`UserError` when unknown)."""
    return registry.get("model", name)


def constructor_options(cls):
    """The names of the keyword arguments ``cls``'s constructor takes (besides ``A``)."""
    names = {param.name for param in inspect.signature(cls.__init__).parameters.values()
             if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)}
    return names - {"self", "A"}


def build_model(name, A, W=None, num_layers=16, **options):
    """``cls(A, num_layers=..., **accepted)``: of ``options`` (and ``W``) only those the
    model's constructor names are passed, the rest are other models' options (e.g.
    ``faithful_init`` for LISTA-CP(SS), ``sigma2`` for TISTA, ``alti``/``gain`` for GLISTA,
    ``lam``).  A model whose class says ``needs_W`` gets the data set's ``W``."""
    cls = model_class(name)
    accepted = constructor_options(cls)
    kwargs = {key: value for key, value in options.items() if key in accepted}
    kwargs["num_layers"] = num_layers
    if cls.needs_W:
        if W is None:
            raise UserError(f"{name} needs W.npy in --data_dir; make the data with "
                            "python -m run.make_data (without --noW)")
        kwargs["W"] = W
    return cls(A, **kwargs)


def load_unrolled(path, expected=None, flag="--load"):
    """An unrolled model from a ``.keras`` file; ``expected``: the ``--model`` name it must
    hold (a file of another model is a :class:`UserError` saying which model it holds)."""
    import keras  # pylint: disable=import-outside-toplevel
    import model_based  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    saved = check_unrolled_file(path, expected, flag)
    try:
        return keras.saving.load_model(path)
    except Exception as err:  # pylint: disable=broad-except
        raise UserError(f"{flag} file {path} holds a {saved} that cannot be loaded "
                        f"({type(err).__name__}: {str(err).splitlines()[0][:80]})") from None


def use_jit(model, flag, strategy=None):
    """XLA where it wins: measured on 2 CPU cores (run.perf), XLA's top-k makes the
    support-selection models (the class's ``support_selection``) about 4x slower, so on a
    CPU they run without it by default; on a GPU every model is XLA-compiled by default
    (:func:`open_l2o_tf.device.default_jit`)."""
    if flag is not None:
        return bool(flag)
    from open_l2o_tf import device  # pylint: disable=import-outside-toplevel
    return device.default_jit(registry.get("model", model).support_selection, strategy)

"""Builds an unrolled model by registry name with the arguments each model needs."""
from open_l2o_tf import registry
from open_l2o_tf.errors import UserError
from open_l2o_tf.keras_files import check_unrolled_file


def build_model(name, A, W, num_layers, lam=0.4, **extra):
    cls = registry.get("model", name)
    kwargs = dict(num_layers=num_layers)
    if name == "step_lista":
        kwargs["lam"] = extra.get("lasso_lam", 0.005)
    else:
        kwargs["lam"] = lam
    if name == "alista":
        if W is None:
            raise UserError("ALISTA needs W.npy in --data_dir; make the data with "
                            "python -m run.make_data (without --noW)")
        kwargs["W"] = W
    if name in ("lista_cp", "lista_cpss"):
        kwargs["faithful_init"] = extra.get("faithful_init", True)
    if name == "glista":
        kwargs["alti"] = extra.get("glista_alti", 5.0)
        kwargs["gain"] = extra.get("glista_gain", "relu")
    if name == "tista":
        kwargs["sigma2"] = extra.get("sigma2", 0.0)
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

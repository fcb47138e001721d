"""Which of our unrolled models a ``.keras`` file holds, read from the archive's
``config.json`` without TensorFlow (the command lines check ``--load`` before any work;
:func:`model_based.factory.load_unrolled` then loads it), and :func:`save_model`, the
atomic ``.keras`` save, and :func:`load_model`, which loads any registered entry's ``.keras``
file (an unrolled model or a learned optimizer) once its family is imported."""
from open_l2o_tf import registry
from open_l2o_tf.errors import UserError


def _saved_class(path):
    """The class name recorded in a ``.keras`` file's config (read from the zip, nothing
    deserialised), or None when the file is not a Keras archive."""
    import json  # pylint: disable=import-outside-toplevel
    import zipfile  # pylint: disable=import-outside-toplevel
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        return config.get("class_name")
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return None


def check_unrolled_file(path, expected=None, flag="--load"):
    """Checks, without TensorFlow, that ``path`` is a ``.keras`` archive of one of our
    unrolled models (of ``--model=expected`` when given); returns its class name."""
    import os  # pylint: disable=import-outside-toplevel
    if not os.path.isfile(path):
        raise UserError(f"{flag} file {path} "
                        f"{'is a directory' if os.path.isdir(path) else 'does not exist'}; "
                        "expected a .keras model written by run.sparse_recovery or run.lasso")
    by_class = {spec.split(":")[1]: name for name, spec in registry.MODELS.items()}
    saved = _saved_class(path)
    if saved is None:
        raise UserError(f"{flag} file {path} is not a Keras .keras archive (no config.json in "
                        "a zip); expected a model.keras written by run.sparse_recovery")
    if saved not in by_class:
        raise UserError(f"{flag} file {path} holds a Keras {saved}, not one of our unrolled "
                        f"models ({', '.join(sorted(registry.MODELS))})")
    if expected is not None and by_class[saved] != expected:
        raise UserError(f"{flag} file {path} holds a {by_class[saved]} model ({saved}), not "
                        f"--model={expected}; pass --model={by_class[saved]}")
    return saved


def save_model(model, path):
    """``model.save(path)`` atomically: Keras writes a temporary ``.keras`` file beside
    ``path``, which is synced and renamed over it.  A failed write (full disk, no
    permission, ...) removes the temporary file and is one
    :class:`~open_l2o_tf.logging.WriteError` naming ``path``; the previous file stays."""
    from open_l2o_tf import logging as olog  # pylint: disable=import-outside-toplevel
    olog.atomic_write_file(path, model.save)
    return path


def load_model(path, kinds=("model", "learned")):
    """``keras.saving.load_model(path)`` after importing every registered entry of
    ``kinds`` (:func:`open_l2o_tf.registry.import_all`), so each class's Keras registration
    has run.  The tables are filled by the families and modules imported before
    (``model_based``, ``model_free``, a user's module): the core names none of them.  A
    class nobody registered is one :class:`UserError`.  (Imports TensorFlow.)"""
    import keras  # pylint: disable=import-outside-toplevel
    for kind in kinds:
        registry.import_all(kind)
    try:
        return keras.saving.load_model(path)
    except TypeError as err:
        if "Could not locate" not in str(err):
            raise
        saved = _saved_class(path)
        raise UserError(f"{path} holds a Keras {saved} that no imported module registered; "
                        "import the package that defines it first (model_based, "
                        "model_free or your own module)") from None

"""Shared pieces of the command lines: common flags, presets, error handling.

Only modules under ``run/`` define and parse flags.  ``main_wrapper`` turns a
:class:`~open_l2o_tf.errors.UserError` (and flag validation errors) into one line on
stderr and exit status 2, instead of a stack trace.
"""
import os
import sys

from absl import app, flags

from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError


def define_common_flags(default_workdir):
    """``--workdir``, ``--preset``, ``--seed`` and ``--load`` for every command."""
    flags.DEFINE_string("workdir", default_workdir,
                        "Directory for results.json, tb/ and ckpt/.")
    flags.DEFINE_enum("preset", "paper", ["paper", "quick"],
                      "paper: the paper's settings; quick: small sizes, minutes on 2 CPUs.")
    flags.DEFINE_integer("seed", 0, "Random seed.")
    flags.DEFINE_string("load", None, "Load a trained model/optimizer from this path "
                        "instead of training it.")


def flag_values_dict():
    """Values of the flags defined by this program's own modules (``run/``), for the
    ``config`` of ``results.json``; absl's and TensorFlow's internal flags are left out."""
    out = {}
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
        name = os.path.basename(str(module))
        ours = (module == "__main__" or str(module).startswith("run.")
                or os.path.basename(os.path.dirname(str(module))) == "run")
        if not ours or name in ("absl.app", "absl.logging"):
            continue
        for flag in module_flags:
            if isinstance(flag.value, (str, int, float, bool, type(None), list)):
                out[flag.name] = flag.value
    return out


def preset_value(preset, paper, quick, override=None):
    """The flag ``override`` when given, else the preset's value."""
    if override is not None:
        return override
    return quick if preset == "quick" else paper


def write_results(workdir, record):
    """Atomically writes ``workdir/results.json`` with one record."""
    path = os.path.join(workdir, "results.json")
    olog.atomic_write_json(path, record)
    return path


def seed_everything(seed):
    """Seeds Python, NumPy and TF/Keras (the initial weights of every network), so a
    command with the same ``--seed`` trains the same model."""
    if seed is None:
        return
    if seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed}")
    import keras  # pylint: disable=import-outside-toplevel
    keras.utils.set_random_seed(int(seed))
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.get_logger().setLevel("ERROR")   # retracing chatter of per-call tf.functions


def main_wrapper(main):
    """``app.run(main)`` where a UserError prints ``error: ...`` and exits with status 2."""
    def wrapped(argv):
        try:
            seed_everything(getattr(flags.FLAGS, "seed", None))
            return main(argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(wrapped, flags_parser=parse)

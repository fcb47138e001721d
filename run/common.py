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
    flags.DEFINE_integer("seed", 0, "Random seed.", lower_bound=0)
    flags.DEFINE_string("load", None, "Load a trained model/optimizer from this path "
                        "instead of training it.")


def define_meta_lr_flag():
    """``--meta_lr`` of the commands that meta-train learned optimizers (positive or unset)."""
    flags.DEFINE_float("meta_lr", None, "Meta learning rate (default: Adam 1e-3 for "
                       "DM/RNNprop/Swarm, RMSProp 1e-6 for L2O-Scale as the original).")
    flags.register_validator("meta_lr", lambda v: v is None or v > 0,
                             message="--meta_lr must be a positive number")


def flag_values_dict():
    """Values of the flags defined by this program's own modules (``run/``), for the
    ``config`` of ``results.json``; absl's and TensorFlow's internal flags are left out."""
    out = {}
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
        module = str(module)
        if not (module == "__main__" or module.startswith("run.")
                or os.path.basename(os.path.dirname(module)) == "run"):
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
    import keras  # pylint: disable=import-outside-toplevel
    keras.utils.set_random_seed(int(seed))


def main_wrapper(main):
    """``app.run(main)`` where a UserError prints ``error: ...`` and exits with status 2."""
    def wrapped(argv):
        try:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            tf.get_logger().setLevel("ERROR")   # retracing chatter of per-call tf.functions
            if "seed" in flags.FLAGS:
                seed_everything(flags.FLAGS.seed)
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

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
    """Every flag value defined by this program's modules (for ``results.json`` config)."""
    out = {}
    for name in flags.FLAGS:
        if name in ("helpshort", "helpfull", "help", "helpxml", "flagfile", "undefok",
                    "logtostderr", "alsologtostderr", "log_dir", "v", "verbosity",
                    "stderrthreshold", "showprefixforinfo", "run_with_pdb", "pdb_post_mortem",
                    "pdb", "run_with_profiling", "profile_file", "use_cprofile_for_profiling",
                    "only_check_args", "logger_levels", "log_file", "log_to_file",
                    "test_srcdir", "test_tmpdir", "test_random_seed", "test_randomize_ordering_seed",
                    "xml_output_file"):
            continue
        value = flags.FLAGS[name].value
        if isinstance(value, (str, int, float, bool, type(None), list)):
            out[name] = value
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


def main_wrapper(main):
    """``app.run(main)`` where a UserError prints ``error: ...`` and exits with status 2."""
    def wrapped(argv):
        try:
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

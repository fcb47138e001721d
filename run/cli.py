"""``open-l2o COMMAND [FLAGS]``: the installed entry point of the command lines.

``open-l2o lasso --optimizer=fista --preset=quick --workdir=w`` runs exactly what
``python -m run.lasso --optimizer=fista --preset=quick --workdir=w`` runs in a checkout:
the command's module is executed as ``__main__`` (``runpy``, as ``python -m`` does) with
``sys.argv[0]`` set to the module's file, so absl parses the same flags and a workdir
records the same command name either way.  A dash or an underscore may separate the words
of a command (``sparse-recovery`` or ``sparse_recovery``).
"""
import os
import runpy
import sys

# command name -> (module under this package, one line of help)
COMMANDS = {
    "make_data": "data for sparse recovery / Lasso in the original layout",
    "sparse_recovery": "Fig. 5: train an unrolled model progressively, NMSE per layer",
    "lasso": "Fig. 6: one optimizer on Lasso",
    "rastrigin": "Fig. 7: one optimizer on the Rastrigin family",
    "nn_training": "Fig. 8: one optimizer training MNIST / CIFAR-10 networks",
    "minimax": "Twin-L2O vs gradient descent-ascent on min-max problems",
    "ood": "Safe-L2O: a trained model vs its safeguarded self vs FISTA, shifted data",
    "perf": "speed ratios measured in one run",
    "benchmark": "a whole suite (quick or paper) + plots + report",
    "convert_original": "an original Open-L2O weights file to our .npz",
    "reproduction": "docs/reproduction.md from the record; --add records a finished run",
    "pretrained": "the shipped trained optimizers/models; --check=NAME re-checks a cell",
}


def _usage():
    lines = ["usage: open-l2o COMMAND [--flag=value ...]   (open-l2o COMMAND --help: its flags)",
             "", "commands:"]
    lines += [f"  {name.replace('_', '-'):18s} {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None):
    """Dispatches ``argv`` (default ``sys.argv``) to the command's module."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if len(argv) >= 2 else 2
    name = argv[1].replace("-", "_")
    if name not in COMMANDS:
        print(f"error: unknown command {argv[1]!r}; expected one of "
              f"{', '.join(n.replace('_', '-') for n in COMMANDS)}", file=sys.stderr)
        return 2
    package = __package__ or "run"
    program = os.path.basename(argv[0])
    if program and program not in ("cli.py", "__main__.py", "-c"):
        # the installed script: hints name commands as "open-l2o make-data", not
        # "python -m run.make_data" (run.startup.as_invoked; inherited by child processes)
        os.environ["OPEN_L2O_PROGRAM"] = program
    # runpy replaces argv[0] with the module's file, as ``python -m`` does
    sys.argv = [argv[0]] + argv[2:]
    runpy.run_module(f"{package}.{name}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

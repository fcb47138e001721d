"""Runs a whole suite of tests, then plots every panel and writes a report against the paper.

    python -m run.benchmark --suite=quick --out=DIR
    python -m run.benchmark --suite=paper --out=DIR [--data_root=DIR] [--mnist_dir=DIR]

Each run of the suite is one of the per-test command lines (``run.sparse_recovery``,
``run.lasso``, ``run.rastrigin``, ``run.nn_training``) started as a subprocess with
``--workdir=DIR/runs/<name>``; its output goes to ``DIR/runs/<name>/log.txt``.  A run that
finished is marked with ``DIR/runs/<name>/DONE`` and skipped when the benchmark is started
again; an interrupted run resumes from its own checkpoints.  A failing run is reported and
the suite goes on.  The methods of each panel are the registry's entries that serve the
command and are in the suite (:func:`methods`; a new entry is in both suites of every
command it serves); ``--import=my_pkg.my_module`` (repeatable) adds the models and learned
optimizers that module registers the same way and passes the flag on to every run.  At the end (and after every run) the benchmark writes
``DIR/results.json`` (a list of records), one PNG per paper figure panel and
``DIR/report.md``.  Titles, axes and report rows state the size, depth and horizon each
run ran (from its ``results.json``); a run is compared with the paper's value (a star in
its figure, a difference in the report) only when it ran the paper's setting
(:func:`open_l2o_tf.setups.comparison`), otherwise its row says why not.  A finished run
whose ``results.json`` is missing or corrupt is run again (the unreadable file is kept as
``results.json.corrupt``); ``--report_only`` shows it as a FAILED row and exits 1.
"""
import os
import re
import subprocess
import sys
import time

from absl import flags

from open_l2o_tf import logging as olog
from open_l2o_tf import registry
from open_l2o_tf import report as outputs
from open_l2o_tf.errors import UserError
from . import common

flags.DEFINE_enum("suite", "quick", ["quick", "paper"], "Which suite to run.")
flags.DEFINE_string("out", "benchmark_out", "Output directory.")
flags.DEFINE_string("only", None, "Run only the runs whose name matches this regex.")
flags.DEFINE_string("data_root", None, "Where the paper suite's data directories are (or are "
                    "made with run.make_data); default OUT/data.")
flags.DEFINE_string("mnist_dir", None, "Directory with the four MNIST idx files (else "
                    "OPEN_L2O_DATA_DIR, else tensorflow-datasets).")
flags.DEFINE_bool("dry_run", False, "Only print the commands.")
flags.DEFINE_bool("report_only", False, "Do not run anything; rebuild the report and plots "
                  "from the runs already in OUT.")
flags.DEFINE_integer("run_timeout", 0, "Seconds after which a run is stopped (0: none).",
                     lower_bound=0)
FLAGS = flags.FLAGS


def validate():
    """--out must be a writable directory (unless only printing), --mnist_dir a folder."""
    if not FLAGS.dry_run:
        common.check_workdir(FLAGS.out, "--out")
    elif os.path.exists(FLAGS.out) and not os.path.isdir(FLAGS.out):
        raise UserError(f"--out {FLAGS.out} is a file, expected a directory")
    for flag in ("mnist_dir", "data_root"):
        value = getattr(FLAGS, flag)
        if value is not None and os.path.exists(value) and not os.path.isdir(value):
            raise UserError(f"--{flag} {value} is a file, expected a directory")
    if FLAGS.only:
        try:
            re.compile(FLAGS.only)
        except re.error as err:
            raise UserError(f"--only is not a valid regular expression: {err}") from None
    if FLAGS.mnist_dir is not None and not os.path.isdir(FLAGS.mnist_dir):
        raise UserError(f"--mnist_dir {FLAGS.mnist_dir} does not exist; expected a folder "
                        "with the four MNIST idx files")

import model_free  # noqa: E402,F401  registers the learned names (imports no TensorFlow)
import open_l2o_tf.classic  # noqa: E402,F401  registers the classic names (no TensorFlow)

# the panels: per command, the arguments of its runs (name suffix, arguments) in each suite;
# the methods of a panel are the registry's entries the suite runs with that command
# (registry info ``commands`` and ``paper`` / ``quick``, :func:`registry.in_suite`)
SPARSE_SETTINGS = ["noiseless", "noisy", "coherent", "large"]
LASSO_SETTINGS = ["lasso_5x10", "lasso_25x50"]
MINIMAX_PROBLEMS = ["saddle", "rotated_saddle", "seesaw", "matrix_game"]
COMMANDS = ["sparse_recovery", "lasso", "rastrigin", "nn_training", "minimax"]
FLAG_OF = {"sparse_recovery": "--model"}       # the others: --optimizer


def panels(suite, data_root=None):
    """``command -> [(run name prefix, arguments, setting)]`` of ``suite``."""
    if suite == "quick":
        return {"sparse_recovery": [("sparse_noiseless_", [], "noiseless")],
                "lasso": [("lasso_", [], "lasso_25x50")],
                "rastrigin": [("rastrigin_n2_", ["--n=2"], "n2")],
                "nn_training": [("nn_mnist_mlp_relu_", ["--problem=mnist_mlp_relu"],
                                 "mnist_mlp_relu")],
                "minimax": [("minimax_rotated_saddle_", ["--problem=rotated_saddle"],
                             "rotated_saddle")]}
    data = {s: [f"--data_dir={os.path.join(data_root, s)}"]
            for s in SPARSE_SETTINGS + LASSO_SETTINGS}
    return {"sparse_recovery": [(f"sparse_{s}_", data[s], s) for s in SPARSE_SETTINGS],
            "lasso": [(f"{s}_", data[s], s) for s in LASSO_SETTINGS],
            "rastrigin": [(f"rastrigin_n{n}_", [f"--n={n}"], f"n{n}") for n in (2, 10)],
            "nn_training": [(f"nn_{p}_", [f"--problem={p}"], p)
                            for p in ("mnist_mlp_relu", "mnist_conv")],
            "minimax": [(f"minimax_{p}_", [f"--problem={p}"], p) for p in MINIMAX_PROBLEMS]}


def methods(command, suite):
    """The registry's names ``suite`` runs with ``command``: classic, unrolled, learned."""
    kinds = ("classic", "model", "learned")
    return [name for name in registry.serving(command, kinds)
            if registry.in_suite(registry.kind_of(name, kinds), name, command, suite)]


def suite_runs(suite, data_root=None):
    """``[(run name, module, arguments)]``: every method of every panel of ``suite`` (with
    the methods of the ``--import`` modules, registered by then)."""
    return [(name, module, args) for name, module, args, _ in _suite(suite, data_root)]


def _suite(suite, data_root=None):
    """``[(run name, module, arguments, (test, setting, method))]`` of ``suite``."""
    common.quiet_tensorflow_import()   # model_based (imports TF) registers the model names
    import model_based  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    runs = []
    for command, settings in panels(suite, data_root).items():
        flag = FLAG_OF.get(command, "--optimizer")
        for prefix, args, setting in settings:
            for method in methods(command, suite):
                runs.append((f"{prefix}{method}", f"run.{command}",
                             [f"{flag}={method}"] + args + [f"--preset={suite}"],
                             (command, setting, method)))
    return runs


def run_cells(suite, data_root=None):
    """``{run name: (test, setting, method)}`` of ``suite``: where a run's row belongs in
    the report even when it has no readable results."""
    return {name: cell for name, _, _, cell in _suite(suite, data_root)}


def quick_suite():
    """Small sizes; every run finishes in minutes on 2 CPU cores."""
    return suite_runs("quick")


def paper_suite(data_root):
    """The paper's Figures 5-8 at the paper's sizes (days of CPU; resumable)."""
    return suite_runs("paper", data_root)


def _module(module):
    """``run.X`` under this package's name (``open_l2o_tf.run.X`` when installed)."""
    return (__package__ or "run") + module[len("run"):]


def data_commands(data_root):
    """``run.make_data`` commands for the paper suite's data directories."""
    commands = []
    for setting in SPARSE_SETTINGS + LASSO_SETTINGS:
        out = os.path.join(data_root, setting)
        commands.append((setting, out, [sys.executable, "-m", _module("run.make_data"),
                                        f"--setting={setting}", f"--out={out}"]))
    return commands


def _run(command, log_path, timeout):
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        try:
            proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout or None, check=False)
            return proc.returncode
        except subprocess.TimeoutExpired:
            log.write(f"stopped after {timeout} s (--run_timeout)\n")
            return -1


def _last_error(log_path):
    if not os.path.exists(log_path):
        return ""
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or "Error" in line]
    return (errors or lines or [""])[-1][:300]


def select_runs(suite, data_root, only=None, out_dir=None):
    """``(runs, names)``: the runs of ``suite`` (those whose name matches the regex
    ``only``), and the run names the report covers (every run of the suite with a folder
    in ``out_dir``, not only ``only``'s)."""
    runs = suite_runs(suite, data_root)
    suite_names = [name for name, _, _ in runs]
    if only:
        try:
            pattern = re.compile(only)
        except re.error as err:
            raise UserError(f"--only is not a valid regular expression: {err}") from err
        runs = [run for run in runs if pattern.search(run[0])]
        if not runs:
            raise UserError(f"--only={only!r} matches no run of the {suite} suite")
    selected = {name for name, _, _ in runs}
    names = [name for name in suite_names if name in selected or (out_dir is not None and
             os.path.isdir(os.path.join(out_dir, "runs", name)))]
    return runs, names


def make_data(runs, data_root, dry_run=False):
    """Makes the data directories the runs' ``--data_dir`` name that do not exist yet."""
    needed = {arg.split("=", 1)[1] for _, _, args in runs for arg in args
              if arg.startswith("--data_dir=")}
    for setting, data_dir, command in data_commands(data_root):
        if data_dir not in needed or os.path.exists(os.path.join(data_dir, "meta.json")):
            continue
        print(f"[benchmark] data {setting}: {' '.join(command)}", flush=True)
        if not dry_run:
            os.makedirs(data_root, exist_ok=True)
            code = _run(command, os.path.join(data_root, f"{setting}.log"), 0)
            if code != 0:
                raise UserError(f"making data {setting} failed; see "
                                f"{os.path.join(data_root, setting + '.log')}")


def run_one(index, total, name, module, args, out_dir, extra, start, failures):
    """Runs one command (skipped when ``DONE``), marks it done or records its failure;
    returns whether it ran."""
    run_dir = os.path.join(out_dir, "runs", name)
    if os.path.exists(os.path.join(run_dir, "DONE")):
        problem = outputs.results_problem(run_dir)
        if problem is None:
            print(f"[benchmark] {index}/{total} {name}: done earlier", flush=True)
            return False
        print(f"[benchmark] {index}/{total} {name}: finished earlier, but {problem}; "
              "running it again", flush=True)
        if not FLAGS.dry_run:
            outputs.set_aside(run_dir)
    command = [sys.executable, "-m", _module(module), f"--workdir={run_dir}"] + args + extra["imports"]
    if module == "run.nn_training":
        command += extra["nn"]
    print(f"[benchmark] {index}/{total} {name}: {' '.join(command[1:])}", flush=True)
    if FLAGS.dry_run:
        return False
    os.makedirs(run_dir, exist_ok=True)
    run_start = time.time()
    code = _run(command, os.path.join(run_dir, "log.txt"), FLAGS.run_timeout)
    if code == 0:
        problem = outputs.results_problem(run_dir)
        if problem is not None:
            failures[name] = f"the command exited 0 but {problem}"
            print(f"[benchmark] {name}: FAILED: {failures[name]}", flush=True)
            return True
        olog.atomic_write_json(os.path.join(run_dir, "DONE"),
                               {"seconds": time.time() - run_start})
        record = olog.read_json(os.path.join(run_dir, "results.json"))
        print(f"[benchmark] {name}: {outputs.summary(record)} in "
              f"{time.time() - run_start:.0f}s; total {time.time() - start:.0f}s", flush=True)
    else:
        failures[name] = _last_error(os.path.join(run_dir, "log.txt"))
        print(f"[benchmark] {name}: FAILED (exit {code}): {failures[name]}", flush=True)
    return True


def main(argv):
    del argv
    out_dir = os.path.abspath(FLAGS.out)
    data_root = os.path.abspath(FLAGS.data_root or os.path.join(out_dir, "data"))
    runs, names = select_runs(FLAGS.suite, data_root, FLAGS.only, out_dir)
    cells = run_cells(FLAGS.suite, data_root)
    failures = {}
    if FLAGS.report_only:
        records, paths, broken = outputs.build_outputs(out_dir, names, failures,
                                                       FLAGS.suite, cells)
        print(f"[benchmark] {len(records)} records, {len(paths)} plots, "
              f"report {os.path.join(out_dir, 'report.md')}")
        for name, why in sorted(broken.items()):
            print(f"[benchmark] FAILED {name}: {why}", file=sys.stderr, flush=True)
        if broken:
            print(f"[benchmark] {len(broken)} run(s) without usable results (FAILED rows "
                  "in the report); exit status 1", file=sys.stderr, flush=True)
        return 1 if broken else 0
    os.makedirs(os.path.join(out_dir, "runs"), exist_ok=True)
    extra = {"imports": [f"--import={module}" for module in FLAGS["import"].value],
             "nn": [f"--mnist_dir={FLAGS.mnist_dir}"] if FLAGS.mnist_dir else []}
    if FLAGS.suite == "paper":
        make_data(runs, data_root, FLAGS.dry_run)
    start = time.time()
    for index, (name, module, args) in enumerate(runs, 1):
        if run_one(index, len(runs), name, module, args, out_dir, extra, start, failures):
            outputs.build_outputs(out_dir, names, failures, FLAGS.suite, cells)
    if FLAGS.dry_run:
        return 0
    records, paths, broken = outputs.build_outputs(out_dir, names, failures, FLAGS.suite,
                                                   cells)
    print(f"[benchmark] {len(records)} records, {len(failures) + len(broken)} failed, "
          f"{len(paths)} plots; report: {os.path.join(out_dir, 'report.md')} "
          f"({time.time() - start:.0f}s)")
    return 1 if failures or broken else 0


if __name__ == "__main__":
    common.main_wrapper(main, validate, needs_tf=False)

"""The catalogue of trained artefacts shipped with the package: list it, re-check a cell.

    python -m run.pretrained                              # the entries, one line each
    python -m run.pretrained --check=fig7_n2_l2o_dm       # re-check its record cell
    python -m run.pretrained --check=l2o_scale_released --cell=mnist_mlp_relu --runs=2
    python -m run.pretrained --check=fig6_5x10_lista --data_dir=data/lasso_5x10

Every entry names a trained file (a learned optimizer or an unrolled model), the command
that made it, its budget, meta seed, data seed, setting, training time, sha256, size and the
record cell it belongs to.  ``--load=NAME`` in the commands (and
``open_l2o_tf.catalogue.path(NAME)`` in Python) use the entry's file.

``--check=NAME`` evaluates the entry's weights on its cell's setting with the cell's own
command and the record's test draw (seed 0), loading the shipped file (no training), and
prints our value now, the record's (``docs/reproduction.json`` when the current directory is
a checkout, else the value stored in the entry) and the paper's, with the wall time.  Our
value is the cell command's ``results.json`` ``final``, or the key the cell's ``check``
names in ``result`` (L2O-Swarm: ``swarm_original_final``, the released evaluation's
quantity that its Fig. 7 cell records).  A
Fig. 7 cell takes about one to ten minutes on 2 CPU cores (1,280 problems x 1,000 steps).
A Fig. 8 cell trains one network per run for 10,000 steps: several minutes per run, 10 runs
(the paper's) unless ``--runs=K``.  A Fig. 6 (Lasso) entry is tied to its data set: ``--data_dir=DIR``
must hold exactly the data the entry's ``make_data`` command makes (its A and the record's
test split, by digest), else one ``error:`` line.  ``OPEN_L2O_CATALOGUE=INDEX.json`` uses
another index.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import flags

from open_l2o_tf import catalogue, reference
from open_l2o_tf.errors import UserError
from . import common

flags.DEFINE_string("check", None, "Re-check the record cell of this catalogue entry "
                    "(Fig. 7: minutes; Fig. 8: several minutes per run, 10 runs unless "
                    "--runs).")
flags.DEFINE_string("cell", None, "With --check: which of the entry's cells, by its setting "
                    "(default: the first).")
flags.DEFINE_integer("runs", None, "With --check of a Fig. 8 cell: runs (paper 10).",
                     lower_bound=1)
flags.DEFINE_string("record", os.path.join("docs", "reproduction.json"),
                    "The record to read the cell's value from (when present; else the "
                    "entry's stored value).")
flags.DEFINE_string("data_dir", None, "With --check of an entry tied to a data set (Fig. 6 "
                    "Lasso): the run.make_data folder it was trained on (the entry's "
                    "make_data command makes it; other data are refused).")
flags.DEFINE_string("workdir", None, "With --check: the evaluation's workdir (default: a "
                    "temporary one, removed).")
FLAGS = flags.FLAGS

# the command of a cell's check -> the reference numbers' test
_TESTS = {"rastrigin": "rastrigin", "nn_training": "nn_training", "lasso": "lasso",
          "sparse_recovery": "sparse_recovery"}


def _cell(entry, setting):
    cells = entry.get("cells") or []
    if not cells:
        raise UserError(f"--check={entry['name']}: the entry has no record cell")
    if setting is None:
        return cells[0]
    for cell in cells:
        if cell["setting"] == setting:
            return cell
    raise UserError(f"--cell={setting}: entry {entry['name']} has cells "
                    f"{', '.join(c['setting'] for c in cells)}")


def validate():
    """The flags and the entry, before any work."""
    if FLAGS.check is None:
        for flag in ("cell", "runs", "workdir", "data_dir"):
            if getattr(FLAGS, flag) is not None:
                raise UserError(f"--{flag} applies with --check only")
        catalogue.load_index()
        return
    entry = catalogue.entry(FLAGS.check)
    cell = _cell(entry, FLAGS.cell)
    if FLAGS.runs is not None and not cell["check"].get("runs_flag"):
        raise UserError(f"--runs applies to a Fig. 8 cell, not {FLAGS.check} "
                        f"(Fig. {cell['figure']} {cell['setting']})")
    catalogue.path(FLAGS.check)      # the file is there and matches its sha256
    _needs_data_dir(entry, FLAGS.data_dir)   # the data themselves are read by check()


def _needs_data_dir(entry, data_dir):
    """An entry tied to a data set needs ``--data_dir``: one error line naming its command."""
    if entry.get("data") and data_dir is None:
        raise UserError(f"--check={entry['name']} needs --data_dir=DIR, the data it was "
                        f"trained on; make it with: {entry['data']['make_data']}")


def _size(nbytes):
    return f"{nbytes / 1024:.0f} KB" if nbytes < 1 << 20 else f"{nbytes / (1 << 20):.1f} MB"


def listing():
    """The entries as a table (one line each) and the index's path."""
    rows = [("name", "kind", "method", "record cell", "value", "size", "trained")]
    for e in catalogue.entries():
        cells = e.get("cells") or []
        cell = "; ".join(f"Fig. {c['figure']} {c['setting']} {c['method']}" for c in cells)
        value = "; ".join(f"{c['value']:.4g}" for c in cells if c.get("value") is not None)
        size = _size(e["bytes"]) + ("" if e.get("file") else " (not shipped)")
        secs = e.get("train_seconds")
        trained = (f"{secs:.0f} s, meta seed {e.get('meta_seed')}" if secs is not None
                   else "released weights")
        rows.append((e["name"], e.get("kind", ""), e.get("method", ""), cell or "-",
                     value or "-", size, trained))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    print(f"({len(rows) - 1} entries in {catalogue.index_file()}; --load=NAME uses one, "
          "--check=NAME re-checks its record cell)")


def check(name, setting=None, runs=None, workdir=None, record=None, data_dir=None):
    """Runs the entry's cell command on its shipped file (on ``data_dir``, checked, for an
    entry tied to a data set); returns (ours, record, paper, seconds) and prints them."""
    entry = catalogue.entry(name)
    cell = _cell(entry, setting)
    file = catalogue.path(name)
    spec = cell["check"]
    package = __package__ or "run"
    args = list(spec["args"]) + [f"--load={file}"]
    _needs_data_dir(entry, data_dir)
    if data_dir is not None:
        catalogue.check_data(entry, data_dir)
        args.append(f"--data_dir={data_dir}")
    if runs is not None:
        args.append(f"{spec['runs_flag']}={runs}")
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="open_l2o_check_")
    argv = [sys.executable, "-m", f"{package}.{spec['command']}"] + args + \
        [f"--workdir={workdir}"]
    shown = common.as_invoked(f"python -m run.{spec['command']} " + " ".join(args))
    print(f"[pretrained] {name}: Fig. {cell['figure']} {cell['setting']} {cell['method']}: "
          f"{shown}", flush=True)
    start = time.time()
    proc = subprocess.run(argv, check=False)
    seconds = time.time() - start
    if proc.returncode:
        raise UserError(f"--check={name}: the evaluation exited with status "
                        f"{proc.returncode} (workdir {workdir})")
    key = spec.get("result", "final")     # L2O-Swarm's cell: the original's quantity
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        result = json.load(f)
    if key not in result:
        raise UserError(f"--check={name}: the evaluation's results.json has no {key!r} "
                        f"(the entry's check names it; workdir {workdir})")
    ours = result[key]
    if own:
        import shutil  # pylint: disable=import-outside-toplevel
        shutil.rmtree(workdir, ignore_errors=True)
    recorded = catalogue.record_value(cell, record)
    source = record
    if recorded is None:
        recorded, source = cell.get("value"), "the catalogue entry"
    test = _TESTS.get(spec["command"])
    paper = reference.lookup(test, cell["setting"], cell.get("paper_method", cell["method"])) \
        if test else None
    def fmt(v):      # 4 decimals; a small value (Lasso's R[1000] ~1e-5) 4 digits
        if v is None:
            return "n/a"
        return f"{v:.4f}" if v == 0 or abs(v) >= 1e-3 else f"{v:.4g}"
    print(f"[pretrained] {name}: {cell['statistic']}"
          + (f", {runs} runs" if runs is not None else ""), flush=True)
    print(f"[pretrained] ours now {fmt(ours)}  record {fmt(recorded)} ({source})  "
          f"paper {fmt(paper)}  wall time {seconds:.1f} s", flush=True)
    return ours, recorded, paper, seconds


def main(argv):
    del argv
    if FLAGS.check is None:
        listing()
        return
    check(FLAGS.check, FLAGS.cell, FLAGS.runs, FLAGS.workdir, FLAGS.record, FLAGS.data_dir)


if __name__ == "__main__":
    common.main_wrapper(main, validate, needs_tf=False)

"""The reproduction record: renders ``docs/reproduction.md`` from ``docs/reproduction.json``
and records finished runs into it.

    python -m run.reproduction                       # regenerate docs/reproduction.md
    python -m run.reproduction --check               # exit 1 if the page is stale or invalid
    python -m run.reproduction --add=W/results.json  # record the run in W (then regenerate)

``--add`` takes the cell (figure, setting, method), our value, the preset and budget, the
training time from ``results.json`` and the command from the ``run.json`` beside it; the
status is computed from the paper's tolerance (``short`` for a quick-preset or unfinished
run) unless ``--status`` is given; ``outside-explained`` needs ``--evidence``.  The library
is :mod:`open_l2o_tf.reproduction`.
"""
import json
import os
import sys

from absl import flags

from open_l2o_tf import logging as olog
from open_l2o_tf import reproduction
from open_l2o_tf.errors import UserError
from . import common

flags.DEFINE_string("record", os.path.join("docs", "reproduction.json"),
                    "The record (JSON); the page is written beside it as .md.")
flags.DEFINE_bool("check", False, "Only check: exit 1 if the record is invalid or the page "
                  "is not what the record renders.")
flags.DEFINE_multi_string("add", [], "A finished run's results.json to record (repeatable).")
flags.DEFINE_enum("status", None, list(reproduction.STATUSES),
                  "With --add: the status (default: computed from the paper's tolerance).")
flags.DEFINE_string("evidence", None, "With --add: the evidence (needed for "
                    "outside-explained) or a note.")
flags.DEFINE_string("budget", None, "With --add: the budget text (default: from results.json).")
flags.DEFINE_string("command", None, "With --add: the command to show (default: from "
                    "run.json, without --workdir).")
flags.DEFINE_float("train_seconds", None, "With --add: the training time to record, e.g. "
                   "without the pauses of a run that was stopped and continued (default: "
                   "results.json's train_seconds, the wall time).", lower_bound=0.0)
FLAGS = flags.FLAGS


def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {what} {path}: {exc}") from None


def validate():
    if not os.path.isfile(FLAGS.record):
        raise UserError(f"--record {FLAGS.record} does not exist; expected the record JSON")
    for path in FLAGS.add:
        if not os.path.isfile(path):
            raise UserError(f"--add {path} does not exist; expected a run's results.json")
    if FLAGS.status == "outside-explained" and not FLAGS.evidence:
        raise UserError("--status=outside-explained needs --evidence")
    if (FLAGS.status or FLAGS.evidence or FLAGS.budget or FLAGS.command
            or FLAGS.train_seconds is not None) and not FLAGS.add:
        raise UserError("--status/--evidence/--budget/--command/--train_seconds go with --add")


def main(argv):
    del argv
    record = reproduction.load(FLAGS.record)
    page = os.path.splitext(FLAGS.record)[0] + ".md"
    for path in FLAGS.add:
        result = _read_json(path, "results")
        run_json_path = os.path.join(os.path.dirname(path), "run.json")
        run_json = _read_json(run_json_path, "run.json") if os.path.isfile(run_json_path) else {}
        row = reproduction.row_from_result(result, run_json, status=FLAGS.status,
                                           evidence=FLAGS.evidence, budget=FLAGS.budget,
                                           command=FLAGS.command,
                                           train_seconds=FLAGS.train_seconds)
        reproduction.upsert(record, row)
        print(f"[reproduction] Figure {row['figure']} {row['setting']} {row['method']}: "
              f"ours {row['ours']} paper {row['paper']} -> {row['status']}", flush=True)
    problems = reproduction.validate(record)
    if problems:
        raise UserError(f"{FLAGS.record}: " + "; ".join(problems[:5]) +
                        (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    text = reproduction.render(record)
    if FLAGS.check:
        try:
            with open(page, encoding="utf-8") as handle:
                current = handle.read()
        except OSError:
            current = None
        if current != text:
            print(common.as_invoked(f"error: {page} is not what {FLAGS.record} renders; "
                                    "run python -m run.reproduction"), file=sys.stderr)
            sys.exit(1)
        print(f"[reproduction] {page} is up to date", flush=True)
        return
    if FLAGS.add:
        reproduction.save(FLAGS.record, record)
    olog.atomic_write_text(page, text)
    counts = reproduction.status_counts(record)
    print(f"[reproduction] wrote {page}: {len(record['rows'])} cells, " +
          ", ".join(f"{n} {s}" for s, n in counts.items()), flush=True)


if __name__ == "__main__":
    common.main_wrapper(main, validate, needs_tf=False)

"""The reproduction record: renders ``docs/reproduction.md`` from ``docs/reproduction.json``
and records finished runs into it.

    python -m run.reproduction                       # regenerate the page and its figures
    python -m run.reproduction --check               # exit 1 if page/figures are stale
    python -m run.reproduction --add=W/results.json  # record the run in W (then regenerate)
    python -m run.reproduction --spread=F.json       # add a cell's spread over draws

``--add`` takes the cell (figure, setting, method), our value, the preset and budget, the
training time from ``results.json`` and the command from the ``run.json`` beside it, and
keeps the run's curve in ``docs/record_curves/``; the status is computed from the paper's
tolerance (``short`` for a quick-preset or unfinished run) unless ``--status`` is given;
``outside-explained`` needs ``--evidence``.  ``--spread`` takes a spread file (the cell, the
statistic, one value per seed, their mean and sd, the command of one draw, how the weights
were trained, optionally the mean curve over draws, which is kept in
``docs/record_curves/``); the cell's status is then decided by the spread rule (see
:mod:`open_l2o_tf.reproduction`).  The page's figures (``docs/img/record_fig*.png``) are
redrawn when the data they plot changed; ``--check`` compares the digest of that data with
the one stored in ``docs/img/record_figures.json``.  The library is
:mod:`open_l2o_tf.reproduction`.
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
flags.DEFINE_multi_string("spread", [], "A spread file (a cell's value over K draws, JSON) to "
                          "add to its row (repeatable).")
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


def read_spread(path):
    """The content of the spread file ``path``; :class:`UserError` naming it if it is
    missing, not JSON or not a valid spread."""
    if not os.path.isfile(path):
        raise UserError(f"--spread {path} does not exist; expected a spread file (JSON)")
    spread = _read_json(path, "--spread")
    problems = reproduction.check_spread(spread, f"--spread {path}")
    if problems:
        raise UserError("; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)"
                                                   if len(problems) > 3 else ""))
    return spread


def validate():
    if not os.path.isfile(FLAGS.record):
        raise UserError(f"--record {FLAGS.record} does not exist; expected the record JSON")
    for path in FLAGS.add:
        if not os.path.isfile(path):
            raise UserError(f"--add {path} does not exist; expected a run's results.json")
    for path in FLAGS.spread:
        read_spread(path)
    if FLAGS.status == "outside-explained" and not FLAGS.evidence:
        raise UserError("--status=outside-explained needs --evidence")
    if (FLAGS.status or FLAGS.evidence or FLAGS.budget or FLAGS.command
            or FLAGS.train_seconds is not None) and not FLAGS.add:
        raise UserError("--status/--evidence/--budget/--command/--train_seconds go with --add")


def main(argv):
    del argv
    record = reproduction.load(FLAGS.record)
    page = os.path.splitext(FLAGS.record)[0] + ".md"
    new_curves = []
    for path in FLAGS.add:
        result = _read_json(path, "results")
        run_json_path = os.path.join(os.path.dirname(path), "run.json")
        run_json = _read_json(run_json_path, "run.json") if os.path.isfile(run_json_path) else {}
        row = reproduction.row_from_result(result, run_json, status=FLAGS.status,
                                           evidence=FLAGS.evidence, budget=FLAGS.budget,
                                           command=FLAGS.command,
                                           train_seconds=FLAGS.train_seconds)
        reproduction.upsert(record, row)
        curve = reproduction.curve_from_result(result, row["figure"])
        kept = reproduction.load_curves(FLAGS.record).get(
            (row["figure"], row["setting"], row["method"]))
        if curve is not None and kept is not None and kept["draws"] > 1:
            print(f"[reproduction] the kept curve of {kept['draws']} draws stays (not this "
                  "run's)", flush=True)
        elif curve is not None:
            new_curves.append(curve)
        print(f"[reproduction] Figure {row['figure']} {row['setting']} {row['method']}: "
              f"ours {row['ours']} paper {row['paper']} -> {row['status']}", flush=True)
    for path in FLAGS.spread:
        spread = read_spread(path)
        row, curve = reproduction.add_spread(record, spread)
        if curve is not None:
            new_curves.append(curve)
        print(f"[reproduction] Figure {row['figure']} {row['setting']} {spread['method']}: "
              f"{spread['mean']:.4g} +- {spread['sd']:.4g} over {len(spread['values'])} "
              f"{spread['draw_kind']}s, paper {row['paper']} -> {row['status']}"
              + ("" if spread["method"] == row["method"] else
                 f" (a variant of {row['method']}, shown beside it)"), flush=True)
    problems = reproduction.validate(record)
    if problems:
        raise UserError(f"{FLAGS.record}: " + "; ".join(problems[:5]) +
                        (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    curves = reproduction.load_curves(FLAGS.record)
    for curve in new_curves:
        curves[(curve["figure"], curve["setting"], curve["method"])] = curve
    panels = reproduction.panels(record, curves)
    text = reproduction.render(record, panels)
    if FLAGS.check:
        try:
            with open(page, encoding="utf-8") as handle:
                current = handle.read()
        except OSError:
            current = None
        stale = reproduction.stale_images(record, curves, FLAGS.record)
        if current != text or stale:
            what = "; ".join(([f"{page} is not what {FLAGS.record} renders"]
                              if current != text else []) + stale)
            print(common.as_invoked(f"error: {what}; run python -m run.reproduction"),
                  file=sys.stderr)
            sys.exit(1)
        print(f"[reproduction] {page} and its figures are up to date", flush=True)
        return
    for curve in new_curves:
        reproduction.save_curve(FLAGS.record, curve)
    if FLAGS.add or FLAGS.spread:
        reproduction.save(FLAGS.record, record)
    drawn = reproduction.draw_panels(record, curves, FLAGS.record)
    olog.atomic_write_text(page, text)
    counts = reproduction.status_counts(record)
    print(f"[reproduction] wrote {page}: {len(record['rows'])} cells, " +
          ", ".join(f"{n} {s}" for s, n in counts.items()) +
          (f"; drew {', '.join(drawn)}" if drawn else ""), flush=True)


if __name__ == "__main__":
    common.main_wrapper(main, validate, needs_tf=False)

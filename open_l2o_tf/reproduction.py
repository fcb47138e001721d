"""The reproduction record: one row per cell of the paper's Figures 5-8, as data.

``docs/reproduction.json`` holds ``{"notes": {figure: text}, "rows": [row, ...]}``; a row
is ``figure, setting, method, metric, paper, tolerance, ours, ours_detail, status,
evidence, budget, command, train_seconds, date`` (Figure 8 rows also ``ours_last100``, the
mean over the runs of the mean of the last 100 steps).  ``docs/reproduction.md`` is rendered
from it (:func:`render`; ``python -m run.reproduction``), and :func:`upsert_result` records
a finished run from its ``results.json`` and ``run.json``.

The cells are the paper's (:data:`FIGURES`, values from :mod:`open_l2o_tf.reference`): 28 of
Figure 5, 20 of Figure 6, 20 of Figure 7 (the Run-and-Inspect oracle included) and 14 of
Figure 8, 82 in all.  Status: ``within`` (inside the reference's tolerance at the paper
preset), ``outside-explained`` (outside, with the evidence of its cause in ``evidence``),
``outside``, ``short`` (run with less than the paper's budget or not finished) or
``not-run``.  A Figure 8 row is ``within`` only if the last-100-step mean is within the
tolerance: one step's minibatch loss is too noisy to decide.
"""
import datetime
import json
import os

from open_l2o_tf import logging as olog
from open_l2o_tf import reference
from open_l2o_tf.errors import UserError

STATUSES = ("within", "outside-explained", "outside", "short", "not-run")

# figure -> (test as results.json writes it, settings, methods)
FIGURES = {
    "5": ("sparse_recovery", ["noiseless", "noisy", "coherent", "large"],
          ["alista", "lista_cpss", "glista", "lamp", "lista", "lista_cp", "lfista"]),
    "6": ("lasso", ["lasso_5x10", "lasso_25x50"],
          ["gd", "adam", "rmsprop", "ista", "fista", "lista", "alista", "l2o_dm",
           "l2o_enhanced", "l2o_rnnprop"]),
    "7": ("rastrigin", ["n2", "n10"],
          ["nag_ls", "gd_ls", "adam", "rmsprop", "l2o_dm", "l2o_enhanced", "l2o_rnnprop",
           "l2o_scale", "l2o_swarm", "oracle"]),
    "8": ("nn_training", ["mnist_mlp_relu", "mnist_conv"],
          ["l2o_enhanced", "l2o_rnnprop", "l2o_scale", "adam", "rmsprop", "sgd", "l2o_dm"]),
}
TITLES = {"5": "Figure 5: sparse recovery, test NMSE (dB) at layer 16",
          "6": "Figure 6: Lasso, modified relative loss R[1000]",
          "7": "Figure 7: Rastrigin, mean loss at step 1,000",
          "8": "Figure 8: MNIST networks, training loss at step 10,000"}
METRICS = {"sparse_recovery": "nmse_db", "lasso": "relative_loss", "rastrigin": "loss",
           "nn_training": "loss"}
TEST_FIGURE = {test: figure for figure, (test, _, _) in FIGURES.items()}
ROW_KEYS = ("figure", "setting", "method", "metric", "paper", "tolerance", "ours",
            "ours_detail", "status", "evidence", "budget", "command", "train_seconds", "date")


def cells():
    """``[(figure, setting, method)]`` of the paper's 82 cells."""
    return [(figure, setting, method) for figure, (_, settings, methods) in FIGURES.items()
            for setting in settings for method in methods]


def paper_cell(figure, setting, method):
    """``(metric, paper value, tolerance dict)`` of a cell from the reference data."""
    test = FIGURES[figure][0]
    return (METRICS[test], reference.lookup(test, setting, method), reference.tolerance(test))


def is_within(value, paper, tolerance):
    """Whether ``value`` is inside ``tolerance`` (absolute or relative) of ``paper``."""
    if value is None or paper is None:
        return False
    if tolerance["kind"] == "absolute":
        return abs(value - paper) <= tolerance["value"]
    return abs(value - paper) <= tolerance["value"] * abs(paper)


def empty_row(figure, setting, method):
    metric, paper, tolerance = paper_cell(figure, setting, method)
    return {"figure": figure, "setting": setting, "method": method, "metric": metric,
            "paper": paper, "tolerance": tolerance, "ours": None, "ours_detail": "",
            "status": "not-run", "evidence": "", "budget": "", "command": "",
            "train_seconds": None, "date": None}


def load(path):
    """The record at ``path``; :class:`UserError` if unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the reproduction record {path}: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("rows"), list):
        raise UserError(f"{path}: expected an object with a 'rows' list")
    return record


def save(path, record):
    record["rows"].sort(key=_order)
    olog.atomic_write_json(path, record)


def new_record():
    """A record with every cell ``not-run``."""
    return {"notes": {}, "rows": [empty_row(*cell) for cell in cells()]}


def _order(row):
    figure = row["figure"]
    _, settings, methods = FIGURES[figure]
    return (figure, settings.index(row["setting"]), methods.index(row["method"]))


def validate(record):
    """The problems of ``record`` as a list of strings (empty: valid)."""
    problems = []
    seen = {}
    for row in record["rows"]:
        key = (row.get("figure"), row.get("setting"), row.get("method"))
        seen[key] = seen.get(key, 0) + 1
        if row.get("status") not in STATUSES:
            problems.append(f"{key}: status {row.get('status')!r} not in {STATUSES}")
        if row.get("status") == "outside-explained" and not row.get("evidence"):
            problems.append(f"{key}: outside-explained without evidence")
        if row.get("status") == "within":
            value = row.get("ours_last100", row.get("ours")) if row.get("figure") == "8" \
                else row.get("ours")
            if not is_within(value, row.get("paper"), row.get("tolerance")):
                problems.append(f"{key}: 'within' but {value} is outside the tolerance of "
                                f"{row.get('paper')}")
        if row.get("status") in ("within", "outside", "outside-explained", "short") \
                and row.get("ours") is None and row.get("status") != "short":
            problems.append(f"{key}: status {row['status']} without a value")
    for key in cells():
        if seen.get(key, 0) != 1:
            problems.append(f"{key}: appears {seen.get(key, 0)} times (expected once)")
    for key in seen:
        if key not in set(cells()):
            problems.append(f"{key}: not a cell of the paper")
    return problems


def status_counts(record):
    counts = {status: 0 for status in STATUSES}
    for row in record["rows"]:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return str(value)


def render(record):
    """``docs/reproduction.md`` for ``record``."""
    counts = status_counts(record)
    lines = ["# Reproduction record", "",
             "<!-- Generated from docs/reproduction.json by `python -m run.reproduction`; "
             "edit the JSON, not this page. -->", "",
             "Every cell of the paper's Figures 5-8: the paper's value (read off the figures; "
             "tolerance in `open_l2o_tf/reference_numbers.json`), ours, its status, the "
             "budget it ran with, the command and the training time (2-core CPU, shared).",
             "", f"**{len(record['rows'])} cells**: " + ", ".join(
                 f"{counts[s]} {s}" for s in STATUSES), "",
             "Status: *within* the tolerance at the paper preset; *outside-explained*: "
             "outside, with the evidence of the cause; *outside*: no cause shown; *short*: "
             "run with less than the paper's budget or not finished; *not-run*.", ""]
    for figure in FIGURES:
        rows = [row for row in sorted(record["rows"], key=_order) if row["figure"] == figure]
        lines += [f"## {TITLES[figure]}", "",
                  "| setting | method | paper | ours | status | budget | train s | command |"
                  " details / evidence |", "|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            ours = _fmt(row["ours"])
            if "ours_last100" in row and row["ours_last100"] is not None:
                ours += f" (last 100: {_fmt(row['ours_last100'])})"
            detail = "; ".join(x for x in (row.get("ours_detail"), row.get("evidence")) if x)
            command = f"`{row['command']}`" if row.get("command") else ""
            train = "" if row.get("train_seconds") is None else f"{row['train_seconds']:,.0f}"
            cells_ = [row["setting"], row["method"], _fmt(row["paper"]), ours, row["status"],
                      row.get("budget", ""), train, command, detail]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ")
                                           for c in cells_) + " |")
        note = record.get("notes", {}).get(figure)
        if note:
            lines += ["", note.strip()]
        lines.append("")
    return "\n".join(lines)


def command_line(run_json):
    """The command of a ``run.json`` as a user types it (workdir-free)."""
    command = run_json.get("command") or ""
    if command and not command.startswith("run."):
        command = f"run.{command}"
    flags = run_json.get("flags") or {}
    skip = ("workdir", "out")
    parts = [f"python -m {command}"] if command else []
    for name in sorted(flags):
        value = flags[name]
        if name in skip or value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"--{'' if value else 'no'}{name}")
        else:
            parts.append(f"--{name}={value}")
    return " ".join(parts)


def row_from_result(result, run_json=None, *, status=None, evidence=None, budget=None,
                    command=None, date=None, train_seconds=None):
    """The record row of a finished run's ``results.json`` (``result``); ``train_seconds``
    replaces the result's (its wall time, which counts the pauses of a stopped run)."""
    test = result.get("test")
    if test not in TEST_FIGURE:
        raise UserError(f"results.json test {test!r} is not a paper figure "
                        f"(expected one of {sorted(TEST_FIGURE)})")
    figure = TEST_FIGURE[test]
    setting, method = result.get("setting"), result.get("method")
    if (figure, setting, method) not in set(cells()):
        raise UserError(f"({setting}, {method}) is not a cell of Figure {figure}")
    row = empty_row(figure, setting, method)
    row["ours"] = result.get("final")
    if figure == "8":
        row["ours_last100"] = result.get("mean_last100")
    value = row.get("ours_last100") if figure == "8" else row["ours"]
    if status is None:
        if result.get("preset") != "paper" or result.get("complete") is False:
            status = "short"
        else:
            status = "within" if is_within(value, row["paper"], row["tolerance"]) else "outside"
    meta = result.get("meta_training") or {}
    auto_budget = [f"preset {result.get('preset')}"]
    if meta.get("meta_episodes"):
        auto_budget.append(f"{meta['meta_episodes']} episodes x {meta.get('meta_unroll')} "
                           "steps")
    if meta.get("loaded"):
        auto_budget.append(f"loaded {os.path.basename(str(meta['loaded']))}")
    if result.get("train_steps"):
        auto_budget.append(f"{result['train_steps']:,} train steps")
    row["ours_detail"] = _runs_detail(result)
    row.update(status=status, evidence=evidence or "",
               budget=budget or ", ".join(auto_budget),
               command=command or command_line(run_json or {}),
               train_seconds=(result.get("train_seconds") if train_seconds is None
                              else float(train_seconds)),
               date=date or datetime.date.today().isoformat())
    return row


def _runs_detail(result):
    """The spread over a Figure 8 command's runs as its ``results.json`` records them: the
    std of the final loss, each run's final loss and the test runs' seconds ("" for a
    result without them)."""
    finals = result.get("final_per_run")
    if not finals:
        return ""
    steps = len(result.get("curve") or []) - 1
    parts = []
    if result.get("std_final") is not None:
        parts.append(f"std over runs {result['std_final']:.3g}")
    parts.append(f"per-run loss at step {steps:,}: " + " ".join(
        "nan" if v is None else f"{v:.4f}" for v in finals))
    bad = [(k + 1, s) for k, s in enumerate(result.get("nonfinite_step_per_run") or [])
           if s is not None]
    if bad:
        parts.append(f"{len(bad)} of {len(finals)} runs became non-finite ("
                     + ", ".join(f"run {k} at step {s:,}" for k, s in bad) + ")")
    if result.get("eval_seconds") is not None:
        parts.append(f"the {len(finals)} test runs took {result['eval_seconds']:,.0f} s")
    return "; ".join(parts)


def upsert(record, row):
    """Replaces the row of ``row``'s cell in ``record`` (or appends it)."""
    key = (row["figure"], row["setting"], row["method"])
    record["rows"] = [r for r in record["rows"]
                      if (r["figure"], r["setting"], r["method"]) != key] + [row]
    return record

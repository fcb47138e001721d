"""The reproduction record: one row per cell of the paper's Figures 5-8, as data.

``docs/reproduction.json`` holds ``{"notes": {figure: text}, "rows": [row, ...]}``; a row
is ``figure, setting, method, metric, paper, tolerance, ours, ours_detail, status,
evidence, budget, command, train_seconds, date`` (Figure 8 rows also ``ours_last100``, the
mean over the runs of the mean of the last 100 steps) and, optionally, ``spread``: our value
over K draws (:func:`spread_from_file`, :data:`SPREAD_KEYS`).  The curves drawn in the
record's figures are kept beside it, one small JSON per cell
(``docs/record_curves/fig<F>_<setting>_<method>.json``: :func:`curve_file`), and the figures
are ``docs/img/record_fig<F>_<setting>.png`` (:func:`draw_panels`), each with the digest of
the data it plots in ``docs/img/record_figures.json``.  ``docs/reproduction.md`` is rendered
from the record (:func:`render`; ``python -m run.reproduction``), and
:func:`row_from_result` makes the row of a finished run from its ``results.json`` and
``run.json``.

The cells are the paper's (:data:`FIGURES`, values from :mod:`open_l2o_tf.reference`): 28 of
Figure 5, 20 of Figure 6, 20 of Figure 7 (the Run-and-Inspect oracle included) and 14 of
Figure 8, 82 in all.  Status: ``within``, ``outside-explained`` (outside, with the evidence of
its cause in ``evidence``), ``outside``, ``short`` (run with less than the paper's budget -- a
progressive run with a cap on the epochs of a stage (``--max_epochs``) included -- or not
finished; the row then says the layer reached and the last stage's validation improvement
an epoch) or ``not-run``.

*Within* (:func:`spread_within`): the paper's value is one sample of the statistic it
reports -- for Figures 6 and 7 one draw's value, so that statistic's spread is the standard
deviation over our draws; for Figure 8 the mean over 10 runs, so its spread is the runs'
standard deviation / sqrt(10).  A cell with a spread is *within* when the paper's value lies
inside our mean +- 2 such spreads, widened by the reading tolerance; a cell without one is
*within* when its single value is inside the tolerance (:func:`is_within`; Figure 8: the
last-100-step mean, one step's minibatch loss being too noisy).  Only a cell run at the
paper's setting and budget can be *within*.  The tolerance-only verdict is kept beside the
status (:func:`tolerance_verdict`).
"""
import datetime
import json
import os

from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError
from open_l2o_tf.record_cells import (  # noqa: F401  (the record's API)
    STATUSES, FIGURES, TITLES, METRICS, TEST_FIGURE, ROW_KEYS, cells, paper_cell, is_within,
    empty_row, _order)
from open_l2o_tf.record_spread import (  # noqa: F401
    PAPER_RUNS, SPREAD_KEYS, SPREAD_OPTIONAL, DRAW_KINDS, PAPER_X, MAX_CURVE_POINTS,
    tolerance_width, statistic_spread, spread_within, tolerance_value, tolerance_verdict,
    spread_verdict, at_paper_budget, decide_status, _finite_number, check_spread,
    split_variant, spread_from_file, add_spread, _round, thin_steps, make_curve,
    curve_from_result, curve_dir, curve_file, save_curve, load_curves)
from open_l2o_tf.record_figures import (  # noqa: F401
    SIZES, AXES, PLOT_VERSION, image_name, panel_data, drawable, panel_digest, caption,
    draw_panel, panels, manifest_path, read_manifest, stale_images, draw_panels)


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
        verdict = spread_verdict(row)
        if row.get("spread"):
            problems += [f"{key}: {p}" for p in check_spread(row["spread"], "spread")]
        for name, variant in sorted((row.get("variants") or {}).items()):
            problems += [f"{key}: {p}" for p in check_spread(variant, f"variant {name}")]
        if verdict is not None and at_paper_budget(row):
            if row["status"] == "within" and not verdict[0]:
                problems.append(f"{key}: 'within' but the paper's {row['paper']} is "
                                f"{verdict[1]:.4g} from our mean, beyond {verdict[2]:.4g}")
            if row["status"] != "within" and verdict[0]:
                problems.append(f"{key}: the spread puts the paper's value within "
                                f"({verdict[1]:.4g} <= {verdict[2]:.4g}) but the status is "
                                f"{row['status']}")
        elif row.get("status") == "within" and tolerance_verdict(row) != "within":
            problems.append(f"{key}: 'within' but {tolerance_value(row)} is outside the "
                            f"tolerance of {row.get('paper')}")
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


def _spread_cell(row):
    """The "over draws" cell: mean +- sd (K), the distance to the paper and the limit."""
    spread = row.get("spread")
    if not spread:
        return ""
    unit = "runs" if spread["draw_kind"] == "run" else "draws"
    text = f"{_fmt(spread['mean'])} ± {_fmt(spread['sd'])} ({len(spread['values'])} {unit})"
    verdict = spread_verdict(row)
    if verdict is not None:
        s = statistic_spread(row["figure"], spread["sd"])
        tol = tolerance_width(row["paper"], row["tolerance"])
        what = " (sd / √10)" if row["figure"] in PAPER_RUNS else ""
        text += (f"; |paper − mean| {_fmt(verdict[1])} vs 2 × {_fmt(s)}{what} + {_fmt(tol)} "
                 f"= {_fmt(verdict[2])}")
    return text


def _variants_detail(row):
    """The spreads of other trained models of the cell's method (they set no status)."""
    parts = []
    for name, variant in sorted((row.get("variants") or {}).items()):
        alike = dict(row, spread=variant)
        verdict = spread_verdict(alike)
        word = "" if verdict is None else (" — within by the rule" if verdict[0]
                                           else " — outside by the rule")
        parts.append(f"Variant {variant['method']} (shown beside the cell, does not set its "
                     f"status): {_spread_cell(alike)}{word}; {_spread_detail(variant)}")
    return "; ".join(parts)


def _spread_detail(spread):
    if not spread:
        return ""
    seeds = spread["seeds"]
    parts = [f"Spread: {spread['statistic']}; {spread['draw_kind'].replace('_', ' ')}s, seeds "
             + (f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1))
                else " ".join(str(x) for x in seeds)),
             "values " + " ".join(_fmt(v) for v in spread["values"]),
             f"one draw: `{spread['command']}`", f"trained: {spread['trained']}"]
    meta = spread.get("meta_seeds")
    if meta:
        parts.append("meta-training seeds " + " ".join(str(x) for x in meta["seeds"]) + ": "
                     + " ".join(_fmt(v) for v in meta["values"]))
    for name, value in sorted((spread.get("extra") or {}).items()):
        parts.append(f"{name}: " + (json.dumps(value) if isinstance(value, (dict, list))
                                    else _fmt(value)))
    if spread.get("evidence"):
        parts.append(spread["evidence"])
    return "; ".join(parts)


def render(record, panels_=None):
    """``docs/reproduction.md`` for ``record``; ``panels_`` (:func:`panels`) adds each
    panel's picture or says that it has none."""
    counts = status_counts(record)
    lines = ["# Reproduction record", "",
             "<!-- Generated from docs/reproduction.json and docs/record_curves/ by `python -m "
             "run.reproduction`; edit the JSON, not this page. -->", "",
             "Every cell of the paper's Figures 5-8: the paper's value (read off the figures; "
             "tolerance in `open_l2o_tf/reference_numbers.json`), ours, its status, the "
             "budget it ran with, the command and the training time (2-core CPU, shared).",
             "", f"**{len(record['rows'])} cells**: " + ", ".join(
                 f"{counts[s]} {s}" for s in STATUSES), "",
             "**Status rule.** The paper's value is one sample of the statistic it reports: "
             "in Figures 5-7 one draw's value (one set of test problems, one training), so "
             "the spread of that statistic is the standard deviation of our value over draws "
             "(data seeds of the test problems); in Figure 8 the mean over 10 training runs, "
             "so its spread is the standard deviation over our runs / √10. A cell with such "
             "a spread is *within* when the paper's value lies inside our mean ± 2 spreads, "
             "widened by the reading tolerance: \\|paper − mean\\| ≤ 2 × spread + tolerance. "
             "A cell without a spread is *within* when its single value is inside the "
             "tolerance (Figure 8: the mean of the last 100 steps, one step's minibatch loss "
             "being too noisy). Only a cell run at the paper's setting and budget can be "
             "*within*. *outside-explained*: outside, with the evidence of the cause; "
             "*outside*: no cause shown; *short*: run with less than the paper's budget or "
             "not finished; *not-run*. The column *tolerance only* keeps the verdict of the "
             "single value by the tolerance alone, so a cell the spread moves is seen. "
             "*ours (single value)* is one draw (Figure 8: the mean over one command's 10 "
             "runs); *ours over draws* is the mean and standard deviation over K draws "
             "(Figure 8: over the runs), with the rule's numbers. The draws are fixed seeds "
             "(listed per cell), so a rerun reproduces every number.",
             ""]
    by_panel = {(p["figure"], p["setting"]): p for p in panels_ or []}
    for figure in FIGURES:
        rows = [row for row in sorted(record["rows"], key=_order) if row["figure"] == figure]
        lines += [f"## {TITLES[figure]}", "",
                  "| setting | method | paper | ours (single value) | ours over draws: mean ± sd "
                  "| status | tolerance only | budget | train s | command |"
                  " details / evidence |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            ours = _fmt(row["ours"])
            if "ours_last100" in row and row["ours_last100"] is not None:
                ours += f" (last 100: {_fmt(row['ours_last100'])})"
            detail = "; ".join(x for x in (row.get("ours_detail"), row.get("evidence"),
                                           _spread_detail(row.get("spread")),
                                           _variants_detail(row)) if x)
            command = f"`{row['command']}`" if row.get("command") else ""
            train = "" if row.get("train_seconds") is None else f"{row['train_seconds']:,.0f}"
            cells_ = [row["setting"], row["method"], _fmt(row["paper"]), ours,
                      _spread_cell(row), row["status"], tolerance_verdict(row),
                      row.get("budget", ""), train, command, detail]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ")
                                           for c in cells_) + " |")
        note = record.get("notes", {}).get(figure)
        if note:
            lines += ["", note.strip()]
        lines.append("")
        for setting in FIGURES[figure][1]:
            panel = by_panel.get((figure, setting))
            if panel is None:
                continue
            if drawable(panel):
                lines += [f"![Figure {figure}, {setting}](img/{image_name(figure, setting)})",
                          "", f"*{caption(panel)}*", ""]
            else:
                lines += [f"*Figure {figure}, {setting} ({SIZES[(figure, setting)]}): no "
                          "curve or spread of this panel is kept with the record, so no "
                          "picture is drawn; the values are in the table.*", ""]
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
    original = result.get("swarm_original_final")
    if original is not None:
        # L2O-Swarm: the cell records the released evaluation's quantity (min over
        # particles of the batch-mean loss), ours (each instance's best particle) beside it
        row["ours"] = original
    if figure == "8":
        row["ours_last100"] = result.get("mean_last100")
    value = row.get("ours_last100") if figure == "8" else row["ours"]
    cap = epoch_cap(result)
    if status is None:
        if result.get("preset") != "paper" or result.get("complete") is False or cap:
            status = "short"
        else:
            status = "within" if is_within(value, row["paper"], row["tolerance"]) else "outside"
    meta = result.get("meta_training") or {}
    auto_budget = [result["budget"] if result.get("budget") else
                   f"preset {result.get('preset')}"
                   + (f", at most {cap} epochs a stage" if cap else "")]
    if meta.get("meta_episodes"):
        auto_budget.append(f"{meta['meta_episodes']} episodes x {meta.get('meta_unroll')} "
                           "steps")
    if meta.get("loaded"):
        auto_budget.append(f"loaded {os.path.basename(str(meta['loaded']))}")
    if result.get("train_steps"):
        auto_budget.append(f"{result['train_steps']:,} train steps")
    row["ours_detail"] = _runs_detail(result) or _stages_detail(result)
    if original is not None:
        quantity = (result.get("swarm_original_quantity")
                    or "min over particles of the mean loss over the instances")
        row["ours_detail"] = (f"the original's quantity ({quantity}); ours, the mean of "
                              f"each instance's best particle: {result.get('final'):.4g}")
    row.update(status=status, evidence=evidence or "",
               budget=budget or ", ".join(auto_budget),
               command=command or command_line(run_json or {}),
               train_seconds=(result.get("train_seconds") if train_seconds is None
                              else float(train_seconds)),
               date=date or datetime.date.today().isoformat())
    return row


def epoch_cap(result):
    """The cap on the epochs of a stage a progressive run was made with (``max_epochs`` in
    ``results.json``, else in its ``config``), None without one."""
    if result.get("max_epochs") is not None:
        return result["max_epochs"]
    return (result.get("config") or {}).get("max_epochs")


def _stages_detail(result):
    """A progressive run's layer reached (when short of the paper's depth or unfinished),
    how many stages the epoch cap stopped, the last stage's validation improvement an
    epoch and the test NMSE of each layer at the end of its own training ("" when the
    result says none of these)."""
    parts = []
    layers, paper_layers = result.get("layers"), result.get("paper_layers")
    if layers is not None and paper_layers is not None and (
            layers < paper_layers or result.get("complete") is False):
        parts.append(f"layer {layers} of {paper_layers} reached"
                     + (" (unfinished run)" if result.get("complete") is False else ""))
    cap = epoch_cap(result)
    if cap:
        parts.append(f"{result.get('capped_stages', '?')} stages stopped by the cap of "
                     f"{cap} epochs")
    rate, last = result.get("last_val_improvement_per_epoch"), result.get("last_stage")
    if rate is not None and last:
        parts.append(f"last stage (layer {last[0]} stage {last[1]}, stopped by "
                     f"{result.get('last_stage_stop')}): validation improving {rate:.3g} "
                     "an epoch over its last epochs")
    at_end = result.get("curve_at_layer_end")
    if at_end:
        parts.append("layer-end test NMSE (dB), layers 1-" + str(len(at_end)) + ": "
                     + " ".join(f"{v:.2f}" for v in at_end))
    return "; ".join(parts)


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
    """Replaces the row of ``row``'s cell in ``record`` (or appends it).  A spread the cell
    had is kept (it is measured apart from the single run) and the status decided again."""
    key = (row["figure"], row["setting"], row["method"])
    old = [r for r in record["rows"] if (r["figure"], r["setting"], r["method"]) == key]
    if old and old[0].get("spread") and not row.get("spread"):
        row["spread"] = old[0]["spread"]
        if old[0].get("explained") or row["status"] == "outside-explained":
            row["explained"] = True
        row["status"] = decide_status(row)
    record["rows"] = [r for r in record["rows"]
                      if (r["figure"], r["setting"], r["method"]) != key] + [row]
    return record

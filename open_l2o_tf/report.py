"""The benchmark's outputs from its runs' folders: ``results.json`` (all records),
the figures (:mod:`open_l2o_tf.plotting`) and ``report.md``, and what to do with a run
whose results are missing or unreadable (:func:`results_problem`, :func:`set_aside`).

Every row states what its run ran (size, depth, horizon, draws, training budget); a row
is compared with the paper (a difference) only when the run is at the paper's setting
(:func:`open_l2o_tf.setups.comparison`), otherwise it says ``not comparable: ran X; paper
Y``.  Values print with four significant digits (:func:`open_l2o_tf.setups.fmt`).  A run
whose ``results.json`` is corrupt, or missing although the run finished (``DONE``), is a
``FAILED`` row, never a gap.
"""
import os

from open_l2o_tf import logging as olog
from open_l2o_tf import plotting, reference, setups
from open_l2o_tf.errors import UserError


def results_problem(run_dir):
    """Why ``run_dir/results.json`` cannot be used (missing, not JSON, not a result
    record), or None when it can."""
    path = os.path.join(run_dir, "results.json")
    if not os.path.exists(path):
        return "its results.json is missing"
    try:
        record = olog.read_json(path)
    except UserError:
        return "its results.json is corrupt (not JSON)"
    if not (isinstance(record, dict) and isinstance(record.get("test"), str)
            and isinstance(record.get("method"), str)
            and isinstance(record.get("curve"), list)):
        return "its results.json holds no result record (test, method, curve)"
    return None


def collect(runs_dir, names):
    """Reads each run's results.json (complete or partial); returns ``(records, statuses,
    broken)``: ``broken`` maps a run whose results.json is unusable (corrupt, or missing
    although the run finished) to why, so the report shows it as a failure, never as a
    gap."""
    records, statuses, broken = [], {}, {}
    for name in names:
        run_dir = os.path.join(runs_dir, name)
        done = os.path.exists(os.path.join(run_dir, "DONE"))
        problem = results_problem(run_dir)
        if problem is None:
            record = dict(olog.read_json(os.path.join(run_dir, "results.json")))
            record["run"] = name
            record["complete"] = done
            records.append(record)
            statuses[name] = "done" if done else "partial"
        elif done or os.path.exists(os.path.join(run_dir, "results.json")):
            broken[name] = (("finished, but " if done else "") + problem
                            + "; run the benchmark again (without --report_only) to redo it")
            statuses[name] = f"FAILED: {broken[name]}"
        else:
            statuses[name] = ("started, no results yet (an interrupted run resumes)"
                              if os.path.isdir(run_dir) else "not run")
    return records, statuses, broken


def _fmt(value):
    """Four significant digits (scientific when small): methods that differ print
    differently (8.2e-05, 0.001812, 5.7e-06, never 0.00)."""
    return setups.fmt(value)


def report_row(record, failure=None):
    """One report table row of ``record``: what ran, ours, the paper's value, and the
    difference only when the run is at the paper's setting (else why it is not
    comparable)."""
    test = record["test"]
    comparison = setups.comparison(record)
    setup = comparison["ran"]
    ran = setups.describe(test, setup, plotting.TITLE_KEYS + plotting.DRAW_KEYS)
    spent = setups.budget(setup, record)
    ran = ", ".join(part for part in (ran, spent) if part) or "–"
    if comparison["comparable"]:
        setting = reference.normalise_setting(test, record["setting"])
        row = reference.compare(test, setting, record["method"], comparison["ours"])
        diff = row["difference"]
        diff_text = "–" if diff is None else (
            f"{diff:+.3g} dec" if row.get("difference_kind") == "decades" else
            f"{diff:+.4g}")
        within = {None: "–", True: "yes", False: "no"}[row["within_tolerance"]]
        ours = f"{_fmt(comparison['ours'])} at " + setups.horizon_label(
            test, comparison["paper_setup"])
    else:
        ours = _fmt(record.get("final"))
        diff_text = ("not comparable: " + comparison["reason"]
                     if comparison["paper"] is not None else "– (no paper value)")
        within = "–"
    status = "complete" if record.get("complete") else "partial"
    if failure:
        status += f"; FAILED: {failure}"
    return (f"| {record['setting']} | {record['method']} | {ran} | {ours} | "
            f"{_fmt(comparison['paper'])} | {diff_text} | {within} | "
            f"{record.get('train_seconds', 0):.0f} | {status} |")


def write_report(out_dir, records, statuses, failures, suite, cells=None, broken=None):
    """``report.md``: per test a table of what ran / ours / paper / difference (the
    difference only at the paper's setting), a FAILED row for every run that failed or
    whose results are unusable, then the run states."""
    cells, broken = cells or {}, broken or {}
    lines = [f"# open-l2o-tf benchmark report ({suite} suite)", "",
             "Paper values were read off the paper's figures (see "
             "`open_l2o_tf/reference_numbers.json` for their tolerance and setting). A row "
             "is compared with the paper only when its run is at the paper's setting "
             "(size, depth, a horizon reaching the paper's, and the paper's training "
             "budget for a trained method); ours is then read at the paper's layer or "
             "iteration and the difference is ours minus paper (dB or loss) or, on "
             "log-scale tests, log10(ours / paper) in decades. Any other row shows what "
             "ran and why it is not comparable; its value is the run's last.", ""]
    by_test = {}
    for record in records:
        by_test.setdefault(record["test"], []).append(record)
    failed_rows = {}
    for name in sorted(set(failures) | set(broken)):
        if name in cells and not any(r.get("run") == name for r in records):
            test, setting, method = cells[name]
            why = broken.get(name) or failures.get(name) or "failed"
            failed_rows.setdefault(test, []).append(
                f"| {setting} | {method} | – | – | – | – | – | – | FAILED: {why} |")
    for test in ["sparse_recovery", "lasso", "rastrigin", "nn_training", "minimax"]:
        if test not in by_test and test not in failed_rows:
            continue
        lines += [f"## {test} (Figure {plotting.FIGURE_OF_TEST.get(test, '-')})", "",
                  "| setting | method | ran | ours | paper | difference | within read-off "
                  "tolerance | train s | status |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for record in sorted(by_test.get(test, []),
                             key=lambda r: (str(r["setting"]), r["method"])):
            lines.append(report_row(record, failures.get(record.get("run"))))
        lines += failed_rows.get(test, [])
        lines.append("")
    lines += ["## Runs", ""]
    for name, status in sorted(statuses.items()):
        extra = f": {failures[name]}" if name in failures else ""
        lines.append(f"- `{name}`: {status}{extra}")
    olog._atomic_write(os.path.join(out_dir, "report.md"),  # pylint: disable=protected-access
                       lambda h: h.write("\n".join(lines) + "\n"), "w")


def build_outputs(out_dir, names, failures, suite, cells=None):
    """results.json, the figures and report.md of the runs ``names``; returns ``(records,
    paths, broken)`` (``broken``: :func:`collect`'s unusable runs)."""
    records, statuses, broken = collect(os.path.join(out_dir, "runs"), names)
    for name in failures:
        statuses[name] = "failed"
    for record in records:
        comparison = setups.comparison(record)
        record["paper_comparison"] = {
            "comparable": comparison["comparable"], "paper": comparison["paper"],
            "paper_setup": comparison["paper_setup"], "at_index": comparison["index"],
            "ours_at": comparison["ours"] if comparison["comparable"] else None,
            "reason": comparison["reason"]}
    olog.atomic_write_json(os.path.join(out_dir, "results.json"), records)
    paths = plotting.plot_results(records, out_dir)
    write_report(out_dir, records, statuses, failures, suite, cells, broken)
    return records, paths, broken


def set_aside(run_dir):
    """Before a finished run whose results are unusable runs again: its ``DONE`` is
    removed and an unreadable ``results.json`` is kept as ``results.json.corrupt``."""
    path = os.path.join(run_dir, "results.json")
    if os.path.exists(path):
        os.replace(path, path + ".corrupt")
    os.remove(os.path.join(run_dir, "DONE"))


def summary(record):
    """A finished run's line: its last value, what ran, and the paper's value only with
    the difference at the paper's setting, else why not."""
    comparison = setups.comparison(record)
    test = record.get("test")
    text = (f"final {_fmt(record.get('final'))} "
            f"({setups.describe(test, comparison['ran'], plotting.TITLE_KEYS)})")
    if comparison["comparable"]:
        return (text + f"; at {setups.horizon_label(test, comparison['paper_setup'])} "
                f"{_fmt(comparison['ours'])}, paper {_fmt(comparison['paper'])}")
    if comparison["paper"] is not None:
        return (text + f"; paper {_fmt(comparison['paper'])}, not comparable ("
                + comparison["reason"] + ")")
    return text

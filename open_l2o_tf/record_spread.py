"""A record cell's spread over draws and the status rule (:mod:`open_l2o_tf.reproduction`).

The paper's value is one sample of the statistic it reports: for Figures 5-7 one draw's
value (its spread is the sd over our draws), for Figure 8 a mean over 10 runs (the runs'
sd / sqrt(10)).  A cell is *within* when the paper's value lies inside our mean +- 2
spreads of that statistic, widened by the reading tolerance (:func:`spread_within`).  Also
the spread files (:func:`check_spread`) and the mean curves the record keeps.
"""
import json
import math
import os

from open_l2o_tf import logging as olog
from open_l2o_tf.record_cells import FIGURES, cells, paper_cell, is_within, empty_row


# The paper's value of a Figure 8 cell is the mean over this many runs (Section 4.3).
PAPER_RUNS = {"8": 10}
SPREAD_KEYS = ("figure", "setting", "method", "metric", "statistic", "draw_kind", "seeds",
               "values", "mean", "sd", "command", "trained")
SPREAD_OPTIONAL = ("curve_steps", "curve_mean", "curve_sd", "meta_seeds", "extra",
                   "evidence")
DRAW_KINDS = {"test_draw": ("6", "7"), "run": ("8",)}
# the x of the paper's value in each figure: layer 16, iteration 1,000, step 10,000
PAPER_X = {"5": 16, "6": 1000, "7": 1000, "8": 10000}
MAX_CURVE_POINTS = 200


def tolerance_width(paper, tolerance):
    """The reading tolerance of ``paper`` as an absolute width."""
    if tolerance["kind"] == "absolute":
        return float(tolerance["value"])
    return float(tolerance["value"]) * abs(paper)


def statistic_spread(figure, sd):
    """The standard deviation of the statistic the paper reports, from the standard
    deviation ``sd`` of our values over draws: one draw's value for Figures 5-7 (``sd``),
    the mean over the paper's 10 runs for Figure 8 (``sd / sqrt(10)``)."""
    return sd / math.sqrt(PAPER_RUNS.get(figure, 1))


def spread_within(paper, mean, sd, tolerance, figure):
    """``(within, distance, half_width)``: whether the paper's value ``paper`` lies inside
    ``mean +- 2 statistic_spread(figure, sd)``, widened by the reading ``tolerance``."""
    distance = abs(paper - mean)
    half = 2.0 * statistic_spread(figure, sd) + tolerance_width(paper, tolerance)
    return distance <= half, distance, half


def tolerance_value(row):
    """The single value the tolerance-only verdict judges (Figure 8: the last-100 mean)."""
    if row.get("figure") == "8":
        return row.get("ours_last100", row.get("ours"))
    return row.get("ours")


def tolerance_verdict(row):
    """``"within"``/``"outside"`` of the single value by the reading tolerance alone,
    ``""`` without a value."""
    value = tolerance_value(row)
    if value is None or row.get("paper") is None:
        return ""
    return "within" if is_within(value, row["paper"], row["tolerance"]) else "outside"


def spread_verdict(row):
    """``(within, distance, half_width)`` of the row's spread, None without one."""
    spread = row.get("spread")
    if not spread or row.get("paper") is None:
        return None
    return spread_within(row["paper"], spread["mean"], spread["sd"], row["tolerance"],
                         row["figure"])


def at_paper_budget(row):
    """Whether the row's single run was made at the paper's setting and budget: the
    statuses of such a run (a ``short`` or ``not-run`` row cannot become *within*)."""
    return row.get("status") in ("within", "outside", "outside-explained")


def decide_status(row):
    """The row's status under the rule: with a spread and at the paper's budget, *within*
    iff :func:`spread_verdict` says so, else ``outside-explained`` (when it has evidence and
    was so marked) or ``outside``; without a spread the status is left as it is."""
    verdict = spread_verdict(row)
    if verdict is None or not at_paper_budget(row):
        return row["status"]
    if verdict[0]:
        return "within"
    if row["status"] == "outside-explained" or (row.get("explained") and row.get("evidence")):
        # ``explained``: the row was outside-explained before a spread made it within
        return "outside-explained"
    return "outside"


def _finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def check_spread(spread, what="spread"):
    """The problems of a spread file's content as a list of strings (empty: valid)."""
    if not isinstance(spread, dict):
        return [f"{what}: expected a JSON object"]
    missing = [key for key in SPREAD_KEYS if key not in spread]
    if missing:
        return [f"{what}: missing key(s) {', '.join(missing)}"]
    problems = []    # other keys are allowed and not kept
    figure, setting = str(spread["figure"]), spread["setting"]
    method, _ = split_variant(figure, setting, spread["method"])
    if method is None:
        return problems + [f"{what}: ({figure}, {setting}, {spread['method']}) is not a cell "
                           "of the paper's Figures 5-8 (nor METHOD_VARIANT of one)"]
    metric = paper_cell(figure, setting, method)[0]
    if spread["metric"] != metric:
        problems.append(f"{what}: metric {spread['metric']!r}, expected {metric!r} for "
                        f"Figure {figure}")
    if spread["draw_kind"] not in DRAW_KINDS:
        problems.append(f"{what}: draw_kind {spread['draw_kind']!r}, expected one of "
                        f"{sorted(DRAW_KINDS)}")
    elif figure not in DRAW_KINDS[spread["draw_kind"]]:
        problems.append(f"{what}: draw_kind {spread['draw_kind']!r} is not Figure {figure}'s")
    seeds, values = spread["seeds"], spread["values"]
    if not isinstance(seeds, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                              for x in seeds):
        problems.append(f"{what}: seeds must be a list of integers")
    elif len(set(seeds)) != len(seeds):
        problems.append(f"{what}: seeds repeat")
    if not isinstance(values, list) or not all(_finite_number(v) for v in values):
        problems.append(f"{what}: values must be a list of finite numbers (a diverged draw "
                        "belongs in evidence)")
    elif isinstance(seeds, list) and len(values) != len(seeds):
        problems.append(f"{what}: {len(values)} values for {len(seeds)} seeds")
    elif len(values) < 2:
        problems.append(f"{what}: at least 2 values are needed for a standard deviation")
    else:
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        for key, expected in (("mean", mean), ("sd", sd)):
            got = spread[key]
            if not _finite_number(got) or abs(got - expected) > 1e-3 * abs(expected) + 1e-12:
                problems.append(f"{what}: {key} {got!r} is not the {key} of values "
                                f"({expected:.6g}; sd with ddof=1)")
    for key in ("statistic", "command", "trained"):
        if not isinstance(spread[key], str) or not spread[key].strip():
            problems.append(f"{what}: {key} must be a non-empty text")
    curve = [spread.get(key) for key in ("curve_steps", "curve_mean", "curve_sd")]
    if any(c is not None for c in curve):
        if not all(isinstance(c, list) for c in curve) or len({len(c) for c in curve}) != 1:
            problems.append(f"{what}: curve_steps, curve_mean and curve_sd must be lists of "
                            "one length")
        elif not 1 <= len(curve[0]) <= MAX_CURVE_POINTS:
            problems.append(f"{what}: the curve has {len(curve[0])} points, expected 1-"
                            f"{MAX_CURVE_POINTS}")
        elif not all(_finite_number(v) for c in curve for v in c):
            problems.append(f"{what}: the curve holds a non-number or non-finite value")
        elif any(b <= a for a, b in zip(curve[0], curve[0][1:])):
            problems.append(f"{what}: curve_steps must increase")
    meta = spread.get("meta_seeds")
    if meta is not None and (not isinstance(meta, dict) or not {"seeds", "values"} <= set(meta)
                             or len(meta["seeds"]) != len(meta["values"])):
        problems.append(f"{what}: meta_seeds must be {{'seeds': [...], 'values': [...], "
                        "'mean': ..., 'sd': ...}} with one value per seed")
    if spread.get("extra") is not None and not isinstance(spread["extra"], dict):
        problems.append(f"{what}: extra must be an object")
    if spread.get("evidence") is not None and not isinstance(spread["evidence"], str):
        problems.append(f"{what}: evidence must be a text")
    return problems


def split_variant(figure, setting, name):
    """``(method, variant)`` of a spread's ``method``: the cell's method and None, or, for
    ``METHOD_VARIANT`` (e.g. ``l2o_scale_released``: another trained model of the same
    method), the method and ``VARIANT``; ``(None, None)`` if it names no cell."""
    if (figure, setting, name) in set(cells()):
        return name, None
    for method in sorted(FIGURES.get(figure, ("", [], []))[2], key=len, reverse=True):
        if name.startswith(method + "_") and (figure, setting, method) in set(cells()):
            return method, name[len(method) + 1:]
    return None, None


def spread_from_file(spread):
    """``(row_spread, curve)``: what a row keeps of a valid spread file (everything but the
    curve) and the curve to keep beside the record (None without one)."""
    kept = {key: spread[key] for key in SPREAD_KEYS + SPREAD_OPTIONAL
            if key in spread and not key.startswith("curve_")}
    kept["figure"] = str(spread["figure"])
    kept["mean"], kept["sd"] = float(spread["mean"]), float(spread["sd"])
    curve = None
    if spread.get("curve_steps"):
        curve = make_curve(kept["figure"], spread["setting"], spread["method"],
                           spread["curve_steps"], spread["curve_mean"], spread["curve_sd"],
                           draws=len(spread["values"]), source=spread["statistic"])
    return kept, curve


def add_spread(record, spread):
    """Puts the (valid) spread file ``spread`` into its row of ``record`` and decides the
    row's status again; returns ``(row, curve or None)``."""
    kept, curve = spread_from_file(spread)
    method, variant = split_variant(kept["figure"], kept["setting"], kept["method"])
    key = (kept["figure"], kept["setting"], method)
    rows = [r for r in record["rows"] if (r["figure"], r["setting"], r["method"]) == key]
    row = rows[0] if rows else None
    if row is None:
        row = empty_row(*key)
        record["rows"].append(row)
    if variant is not None:   # shown beside the cell, its curve not kept; no status change
        row.setdefault("variants", {})[variant] = kept
        return row, None
    if row["status"] == "outside-explained":
        row["explained"] = True
    row["spread"] = kept
    row["status"] = decide_status(row)
    return row, curve


def _round(value, digits=4):
    """``value`` to ``digits`` significant digits (a curve kept in the repository)."""
    if value == 0 or not math.isfinite(value):
        return float(value) if math.isfinite(value) else None
    return float(f"{value:.{digits}g}")


def thin_steps(n, max_points=MAX_CURVE_POINTS):
    """At most ``max_points`` indices of ``0..n-1``, increasing: all of them when few, else
    0 and about log-spaced ones (dense at the start, where the curves move) to ``n - 1``."""
    if n <= max_points:
        return list(range(n))
    ratio = math.log(n - 1) / (max_points - 2)
    return sorted({0, n - 1} | {int(round(math.exp(ratio * i))) for i in range(max_points - 1)})


def make_curve(figure, setting, method, steps, mean, sd=None, *, draws=1, source=""):
    """A curve kept beside the record: x (``steps``: layer or iteration), the mean over
    ``draws`` and its standard deviation (None for one run), rounded to 4 digits."""
    return {"figure": str(figure), "setting": setting, "method": method,
            "steps": [int(x) for x in steps], "mean": [_round(float(v)) for v in mean],
            "sd": None if sd is None else [_round(float(v)) for v in sd],
            "draws": int(draws), "source": source}


def curve_from_result(result, figure):
    """The curve of a finished run's ``results.json``, thinned to at most 200 points: x is
    the layer (Figure 5: ``curve[i]`` is layer i + 1, after the 0 dB start) or the
    iteration/step (``curve[k]`` at k); None without a curve."""
    values = [v for v in (result.get("swarm_original_curve") or result.get("curve") or [])]
    if not values or any(v is None for v in values):
        return None
    if figure == "5":
        steps = list(range(len(values) + 1))
        values = [0.0] + values
    else:
        steps = list(range(len(values)))
    picks = thin_steps(len(values))
    return make_curve(figure, result.get("setting"), result.get("method"),
                      [steps[i] for i in picks], [values[i] for i in picks],
                      draws=1, source="one run (results.json)")


def curve_dir(record_path):
    """Where the curves of the record at ``record_path`` are kept."""
    return os.path.join(os.path.dirname(os.path.abspath(record_path)), "record_curves")


def curve_file(record_path, figure, setting, method):
    return os.path.join(curve_dir(record_path), f"fig{figure}_{setting}_{method}.json")


def save_curve(record_path, curve):
    olog.atomic_write_json(curve_file(record_path, curve["figure"], curve["setting"],
                                      curve["method"]), curve)


def load_curves(record_path):
    """``{(figure, setting, method): curve}`` of the curves kept beside the record."""
    curves = {}
    for figure, setting, method in cells():
        path = curve_file(record_path, figure, setting, method)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                curves[(figure, setting, method)] = json.load(handle)
    return curves

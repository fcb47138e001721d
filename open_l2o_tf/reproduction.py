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
its cause in ``evidence``), ``outside``, ``short`` (run with less than the paper's budget or
not finished) or ``not-run``.

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
import hashlib
import json
import math
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
    values = [v for v in (result.get("curve") or [])]
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


SIZES = {
    ("5", "noiseless"): "A 256x512 Gaussian, noiseless, 1,024 test samples",
    ("5", "noisy"): "A 256x512 Gaussian, SNR 20 dB, 1,024 test samples",
    ("5", "coherent"): "public 256x512 dictionary (mutual coherence 0.850), 1,024 test "
                       "samples",
    ("5", "large"): "A 512x1024 Gaussian, noiseless, 1,024 test samples",
    ("6", "lasso_5x10"): "Lasso 5x10, lambda 0.005, 1,280 test instances, 1,000 iterations",
    ("6", "lasso_25x50"): "Lasso 25x50, lambda 0.005, 1,280 test instances, 1,000 "
                          "iterations",
    ("7", "n2"): "Rastrigin n = 2, 128 instances x 10 starts, 1,000 steps",
    ("7", "n10"): "Rastrigin n = 10, 128 instances x 10 starts, 1,000 steps",
    ("8", "mnist_mlp_relu"): "MNIST MLP 784-20-10 (ReLU), batch 128, 10 runs x 10,000 steps",
    ("8", "mnist_conv"): "MNIST ConvNet, batch 128, 10 runs x 10,000 steps",
}
AXES = {  # x label, y label, x scale, y scale
    "5": ("layer", "NMSE (dB)", "linear", "linear"),
    "6": ("iteration", "relative loss R", "log", "log"),
    "7": ("iteration", "mean loss", "log", "linear"),
    "8": ("step", "training loss", "linear", "log"),
}
PLOT_VERSION = "5"   # bump when the drawing changes, so --check asks for new images


def image_name(figure, setting):
    return f"record_fig{figure}_{setting}.png"


def panel_data(record, curves, figure, setting):
    """Everything the figure of one panel plots, as plain data (its digest tells whether the
    image is up to date): our kept curves (mean and sd over draws), our values without a
    kept curve (spread means with their sd, single values), the paper's values at
    :data:`PAPER_X`, and the budgets of the rows drawn that are not the paper's."""
    rows = [row for row in sorted(record["rows"], key=_order)
            if row["figure"] == figure and row["setting"] == setting]
    series, points, stars, short = [], [], [], []
    for row in rows:
        method = row["method"]
        curve = curves.get((figure, setting, method))
        spread = row.get("spread")
        if curve is not None:
            series.append({"method": method, "steps": curve["steps"], "mean": curve["mean"],
                           "sd": curve["sd"], "draws": curve["draws"]})
        elif spread is not None:
            points.append({"method": method, "x": PAPER_X[figure], "value": spread["mean"],
                           "sd": spread["sd"], "draws": len(spread["values"])})
        elif row.get("ours") is not None:
            points.append({"method": method, "x": PAPER_X[figure], "value": row["ours"],
                           "sd": None, "draws": 1})
        if row.get("paper") is not None:
            stars.append({"method": method, "x": PAPER_X[figure], "value": row["paper"]})
        if (curve is not None or spread is not None or row.get("ours") is not None) \
                and not at_paper_budget(row):
            short.append(f"{method}: {row.get('budget') or row['status']}")
    return {"figure": figure, "setting": setting, "series": series, "points": points,
            "stars": stars, "short": short, "version": PLOT_VERSION}


def drawable(panel):
    """Whether a panel has something of ours beyond single values: a kept curve or a
    spread.  Others get no picture (the page says so)."""
    return bool(panel["series"]) or any(p["sd"] is not None for p in panel["points"])


def panel_digest(panel):
    text = json.dumps(panel, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def caption(panel):
    """The caption under a panel's picture (size, horizon, what is drawn, budgets)."""
    figure, setting = panel["figure"], panel["setting"]
    unit = "runs" if figure == "8" else "draws"
    where = {"5": "layer 16", "6": "iteration 1,000", "7": "step 1,000",
             "8": "step 10,000"}[figure]
    parts = [f"Figure {figure}, {setting}: {SIZES[(figure, setting)]}."]
    if any(item["draws"] > 1 for item in panel["series"]):
        parts.append("Lines: our mean curve, with a band of +-1 standard deviation over "
                     f"{unit} where the curve has several (the legend says how many).")
    elif panel["series"]:
        parts.append("Lines: our curve of one run each (no band: one draw).")
    if panel["points"]:
        parts.append(f"Crosses {'' if panel['series'] else 'in one column per method '}"
                     f"at {where}: our value of a cell whose curve is not kept; where it has "
                     f"a spread, a thin bar of +-1 standard deviation over {unit} and a thick "
                     "one of +-2 spreads of the paper's statistic (the status rule's "
                     "interval before the reading tolerance" +
                     (": sd / √10, the paper's value being a mean of 10 runs" if figure in
                      PAPER_RUNS else "") + ").")
    parts.append(f"Stars: the paper's values at {where}.")
    if panel["short"]:
        parts.append("Not at the paper's budget: " + "; ".join(panel["short"]) + ".")
    else:
        parts.append("Every cell drawn ran at the paper's preset and budget (the table's "
                     "budget column).")
    return " ".join(parts)


def draw_panel(panel, path):
    """Draws one panel's picture to ``path`` (PNG, written atomically)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.plotting import style  # pylint: disable=import-outside-toplevel
    figure = panel["figure"]
    xlabel, ylabel, xscale, yscale = AXES[figure]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    unit = "runs" if figure == "8" else "draws"
    for item in panel["series"]:
        label, colour, _ = style(item["method"])
        steps = list(item["steps"])
        mean = [float("nan") if v is None else v for v in item["mean"]]
        if xscale == "log" and steps and steps[0] == 0:
            steps, mean = steps[1:], mean[1:]
            sd = item["sd"][1:] if item["sd"] else None
        else:
            sd = item["sd"]
        many = item["draws"] > 1
        ax.plot(steps, mean, color=colour, lw=1.4,
                label=f"{label} ({item['draws']} {unit})" if many else f"{label} (1 run)")
        if many and sd:
            low = [m - s for m, s in zip(mean, sd)]
            if yscale == "log":   # a band below zero cannot be drawn on a log axis
                low = [max(lo, m / 100) for lo, m in zip(low, mean)]
            ax.fill_between(steps, low, [m + s for m, s in zip(mean, sd)], color=colour,
                            alpha=0.2, lw=0)
    # without curves the panel is one column per method at the paper's x (else they overlap)
    columns = not panel["series"]
    order = {item["method"]: k for k, item in enumerate(panel["stars"])}

    def where(method, k):
        if columns:
            return order.get(method, len(order) + k)
        if xscale == "log":    # beside the paper's x, each a little apart
            return PAPER_X[figure] * 1.06 ** (k + 1)
        return PAPER_X[figure] * (1 + 0.01 * (k + 1))

    for k, item in enumerate(panel["points"]):
        label, colour, _ = style(item["method"])
        x = where(item["method"], k)
        text = f"{label} ({item['draws']} {unit})" if item["sd"] is not None else \
            f"{label} (one value, no spread kept)"
        if item["sd"] is not None:
            for width, half in ((0.8, item["sd"]),
                                (3.0, 2 * statistic_spread(figure, item["sd"]))):
                low = half if yscale != "log" else min(half, item["value"] * 0.99)
                ax.errorbar([x], [item["value"]], yerr=[[low], [half]], fmt="none",
                            ecolor=colour, elinewidth=width, capsize=3 if width < 1 else 0)
        ax.plot([x], [item["value"]], marker="x", color=colour, ms=8, ls="none", label=text)
    ours = {item["method"] for item in panel["series"] + panel["points"]}
    for k, item in enumerate(panel["stars"]):
        label, colour, _ = style(item["method"])
        if yscale == "log" and item["value"] <= 0:
            continue
        ax.plot([k if columns else item["x"]], [item["value"]], marker="*", ms=12,
                color=colour, mec="black", mew=0.6, ls="none",
                label=None if item["method"] in ours else f"{label}: paper only")
    ax.plot([], [], marker="*", ms=10, color="white", mec="black", ls="none",
            label="paper (star in the method's colour)")
    if columns:
        xscale, xlabel = "linear", f"method (all at {xlabel} {PAPER_X[figure]:,})"
    ax.set_xscale(xscale)
    ax.set_yscale(yscale)
    if columns:
        ax.set_xticks(range(len(panel["stars"])))
        ax.set_xticklabels([style(item["method"])[0] for item in panel["stars"]],
                           rotation=30, fontsize=7, ha="right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"Figure {figure}: {SIZES[(figure, panel['setting'])]}", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    olog.atomic_write_with(path, lambda h: fig.savefig(h, format="png"))
    plt.close(fig)


def panels(record, curves):
    """``[panel_data]`` of every panel of Figures 5-8, in order."""
    return [panel_data(record, curves, figure, setting)
            for figure, (_, settings, _) in FIGURES.items() for setting in settings]


def manifest_path(record_path):
    return os.path.join(os.path.dirname(os.path.abspath(record_path)), "img",
                        "record_figures.json")


def read_manifest(record_path):
    """``{image name: digest of the data it was drawn from}`` ({} when absent or unreadable)."""
    try:
        with open(manifest_path(record_path), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def stale_images(record, curves, record_path):
    """The problems of the record's pictures (missing image, or one drawn from other
    data than the record's: its digest in ``img/record_figures.json`` differs)."""
    manifest = read_manifest(record_path)
    img = os.path.dirname(manifest_path(record_path))
    problems = []
    for panel in panels(record, curves):
        name = image_name(panel["figure"], panel["setting"])
        if not drawable(panel):
            if name in manifest:
                problems.append(f"img/{name} is listed but the panel has nothing to draw")
            continue
        if not os.path.isfile(os.path.join(img, name)):
            problems.append(f"img/{name} is missing")
        elif manifest.get(name) != panel_digest(panel):
            problems.append(f"img/{name} was drawn from other data than the record's")
    return problems


def draw_panels(record, curves, record_path):
    """Draws the pictures whose digest changed (or are missing); returns their names."""
    manifest = read_manifest(record_path)
    img = os.path.dirname(manifest_path(record_path))
    drawn, new_manifest = [], {}
    for panel in panels(record, curves):
        name = image_name(panel["figure"], panel["setting"])
        path = os.path.join(img, name)
        if not drawable(panel):
            if os.path.isfile(path):
                os.remove(path)
            continue
        digest = panel_digest(panel)
        if manifest.get(name) != digest or not os.path.isfile(path):
            draw_panel(panel, path)
            drawn.append(name)
        new_manifest[name] = digest
    olog.atomic_write_json(manifest_path(record_path), new_manifest)
    return drawn


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

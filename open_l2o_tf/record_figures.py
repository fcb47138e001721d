"""The record's pictures: one panel per setting of Figures 5-8, drawn from the curves kept
with the record, our spread bands and the paper's values as stars; a manifest of the
drawn data's digests tells a stale picture (:mod:`open_l2o_tf.reproduction`).
"""
import hashlib
import json
import os

from open_l2o_tf import logging as olog
from open_l2o_tf.record_cells import FIGURES, _order
from open_l2o_tf.record_spread import PAPER_RUNS, PAPER_X, statistic_spread, at_paper_budget


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

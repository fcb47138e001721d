"""Figures in the style of the paper's Figures 5-8, drawn from ``results.json`` records.

One panel per (test, setting): NMSE (dB) against the layer for sparse recovery (Fig. 5,
with the 0 dB point at layer 0), the modified relative loss against the iteration on log-log
axes for Lasso (Fig. 6), the mean loss against the iteration for Rastrigin (Fig. 7, log-x)
and the training loss for neural networks (Fig. 8, log-y).  The title states the size,
depth and horizon the runs ran (from their records, never the paper's), e.g. "Noiseless,
64x128, 8 layers (quick)".  The paper's value of a method is drawn as a hollow star in the
method's colour at the paper's layer / iteration, and only for a run at the paper's
setting (:func:`open_l2o_tf.setups.comparison`); the caption under the axes says which
runs have a star and, for the others, why not (e.g. "the paper's values are for 256x512,
16 layers; not comparable").

Every method gets a style (:func:`style`): the paper's methods their look in the paper's
legend (``STYLE``), a method registered with ``style=(label, colour, marker)`` in its
registry info that style, and any other name (a model or learned optimizer of your own,
``--import``) a colour and marker derived from its name, distinct from the paper's colours
and the same in every figure and run.
"""
import os
import textwrap
import zlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np  # noqa: E402  pylint: disable=wrong-import-position

from open_l2o_tf import logging as olog  # noqa: E402  pylint: disable=wrong-import-position
from open_l2o_tf import registry  # noqa: E402  pylint: disable=wrong-import-position
from open_l2o_tf import setups  # noqa: E402  pylint: disable=wrong-import-position

# label, colour, marker of the paper's methods: the paper's legend where it has one.
STYLE = {
    "lista": ("LISTA", "#9e9e9e", "+"),
    "lista_cp": ("LISTA-CP", "#1f5fd6", "x"),
    "lista_cpss": ("LISTA-CPSS", "#ff8c00", "D"),
    "lfista": ("LFISTA", "#ff4500", "<"),
    "lamp": ("LAMP", "#8a00c2", "s"),
    "alista": ("ALISTA", "#228b22", "o"),
    "glista": ("GLISTA", "#5a6a7a", ">"),
    "tista": ("TISTA", "#8b4513", "^"),
    "tilista": ("TiLISTA", "#008080", "v"),
    "step_lista": ("ALISTA (StepLISTA)", "#228b22", "o"),
    "ista": ("ISTA", "#8c564b", None),
    "fista": ("FISTA", "#e377c2", None),
    "gd": ("GD", "#7f7f7f", None),
    "gd_ls": ("GD (line search)", "#7f7f7f", None),
    "nag_ls": ("NAG (line search)", "#bcbd22", None),
    "sgd": ("SGD", "#7f7f7f", None),
    "adam": ("Adam", "#1f77b4", None),
    "rmsprop": ("RMSProp", "#ff7f0e", None),
    "l2o_dm": ("L2O-DM", "#2ca02c", None),
    "l2o_rnnprop": ("L2O-RNNprop", "#d62728", None),
    "l2o_enhanced": ("L2O-enhanced", "#9467bd", None),
    "l2o_scale": ("L2O-Scale", "#17becf", None),
    "l2o_swarm": ("L2O-Swarm", "#e6ab02", None),
    "oracle": ("Run-and-Inspect oracle", "#000000", None),
    "twin_l2o": ("Twin-L2O", "#d62728", None),
    "gda": ("GDA", "#7f7f7f", None),
    "adam_gda": ("Adam GDA", "#1f77b4", None),
}

# the name of each panel; the size, depth and horizon in its title are the runs' own
# (:func:`panel_title`), never the paper's
PANEL_NAMES = {
    ("sparse_recovery", "noiseless"): "Noiseless",
    ("sparse_recovery", "noisy"): "SNR = 20dB",
    ("sparse_recovery", "coherent"): "Coherent dictionary",
    ("sparse_recovery", "large"): "Large scale",
    ("lasso", "lasso_5x10"): "Lasso",
    ("lasso", "lasso_25x50"): "Lasso",
    ("rastrigin", "n2"): "Rastrigin",
    ("rastrigin", "n10"): "Rastrigin",
    ("nn_training", "mnist_mlp_relu"): "MLP (MNIST, ReLU)",
    ("nn_training", "mnist_mlp_sigmoid"): "MLP (MNIST, sigmoid)",
    ("nn_training", "mnist_conv"): "ConvNet (MNIST)",
    ("nn_training", "cifar_conv"): "ConvNet (CIFAR-10)",
}

FIGURE_OF_TEST = {"sparse_recovery": 5, "lasso": 6, "rastrigin": 7, "nn_training": 8}


# colours and markers for the other methods (none of them a colour of STYLE)
OTHER_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#f032e6",
                 "#9a6324", "#800000", "#808000", "#000075", "#469990", "#42d4f4")
OTHER_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "h", "p", "<", ">", "d")


def style(method):
    """``(label, colour, marker)`` of ``method``: the paper's (``STYLE``), the ``style``
    its registry entry declares, else one derived from the name (a stable hash picks an
    ``OTHER_COLOURS`` colour and an ``OTHER_MARKERS`` marker)."""
    if method in STYLE:
        return STYLE[method]
    kind = registry.kind_of(method)
    declared = registry.info(kind, method).get("style") if kind else None
    if declared is not None:
        return tuple(declared)
    code = zlib.crc32(str(method).encode("utf-8"))
    return (str(method), OTHER_COLOURS[code % len(OTHER_COLOURS)],
            OTHER_MARKERS[(code // len(OTHER_COLOURS)) % len(OTHER_MARKERS)])


def panel_styles(methods):
    """``{method: (label, colour, marker)}`` for the methods drawn in one panel: each
    :func:`style`, except that a derived (hashed) colour already taken in the panel moves
    on to the next ``OTHER_COLOURS`` colour not yet taken, so two new names never share a
    line colour in one panel (the Lasso, Rastrigin and network panels draw no markers)."""
    looks = {method: style(method) for method in methods}
    taken = {look[1] for method, look in looks.items() if not _derived(method)}
    for method in sorted(m for m in looks if _derived(m)):
        label, colour, marker = looks[method]
        start = OTHER_COLOURS.index(colour)
        for step in range(len(OTHER_COLOURS)):
            candidate = OTHER_COLOURS[(start + step) % len(OTHER_COLOURS)]
            if candidate not in taken:
                colour = candidate
                break
        taken.add(colour)
        looks[method] = (label, colour, marker)
    return looks


def _derived(method):
    """Whether ``method``'s style is derived from its name (neither the paper's nor its
    registry entry's)."""
    if method in STYLE:
        return False
    kind = registry.kind_of(method)
    return not (kind and registry.info(kind, method).get("style") is not None)


def panel_key(record):
    """``(test, setting)`` of a record, with Rastrigin settings normalised to ``n2``/``n10``."""
    setting = str(record.get("setting"))
    if record.get("test") == "rastrigin" and not setting.startswith("n"):
        setting = f"n{setting}"
    return record.get("test"), setting


TITLE_KEYS = ("m", "n", "layers", "iterations", "half_steps")   # size, depth, horizon
DRAW_KEYS = ("instances", "starts", "restarts", "runs")
LOG_X = ("lasso", "rastrigin", "minimax")


def _shared(setups, keys):
    """The values of ``keys`` the setups share; a key whose values differ reads
    ``'lo-hi'``; a key some setup lacks is left out."""
    out = {}
    for key in keys:
        values = [s[key] for s in setups if key in s]
        if not values or len(values) < len(setups):
            continue
        low, high = min(values), max(values)
        out[key] = low if low == high else f"{low}-{high}"
    return out


def panel_title(test, setting, records):
    """The panel's name and the size, depth and horizon its runs ran, with their preset,
    e.g. ``'Noiseless, 64x128, 8 layers (quick)'`` (:func:`open_l2o_tf.setups.ran`)."""
    ran = [setups.ran(record) for record in records]
    name = PANEL_NAMES.get((test, setting), f"{test}: {setting}")
    if test == "minimax":
        name = f"Minimax: {setting}"
    what = setups.describe(test, _shared(ran, TITLE_KEYS))
    presets = sorted({str(s.get("preset")) for s in ran})
    return f"{name}, {what}" + (f" ({', '.join(presets)})" if presets else "") if what \
        else name + (f" ({', '.join(presets)})" if presets else "")


def _draws(test, records):
    """The draws a panel's mean is over, in words (``'mean of 2 runs'``), or ''."""
    text = setups.describe(test, _shared([setups.ran(r) for r in records], DRAW_KEYS))
    return f"mean of {text}" if text else ""


def panel_caption(test, records):
    """What the panel's stars are: the paper's values at the paper's iteration / layer for
    the runs at the paper's setting (:func:`open_l2o_tf.setups.comparison`), and for the
    others why there is no star."""
    looks = panel_styles({record["method"] for record in records})
    comparisons = {r["method"]: setups.comparison(r) for r in records}
    paper = next((c["paper_setup"] for c in comparisons.values() if c["paper_setup"]), None)
    starred = sorted(m for m, c in comparisons.items() if c["comparable"])
    unstarred = sorted(m for m, c in comparisons.items()
                       if c["paper"] is not None and not c["comparable"])
    parts = ["lines: ours"]
    if starred:
        parts.append("hollow stars: the paper's values at "
                     + setups.horizon_label(test, paper) + " (runs at the paper's setting)")
    if unstarred:
        reasons = sorted({comparisons[m]["reason"] for m in unstarred})
        if starred:
            parts.append("no star for " + ", ".join(looks[m][0] for m in unstarred)
                         + ": not comparable (" + "; ".join(reasons) + ")")
        else:
            parts.append("no paper stars: the paper's values are for "
                         + setups.describe(test, paper, TITLE_KEYS)
                         + "; not comparable (" + " / ".join(reasons) + ")")
    if not starred and not unstarred:
        parts.append("the paper has no values for these runs")
    return "; ".join(parts)


def plot_panel(ax, records, test, setting):
    """Draws one panel (one setting of one test) from its records on ``ax``: each curve
    against its layer / iteration (layer 0 = 0 dB; iteration 0 left out on a log axis),
    and the paper's value as a hollow star at the paper's layer / iteration, only for a run
    at the paper's setting (:func:`open_l2o_tf.setups.comparison`)."""
    looks = panel_styles({record["method"] for record in records})
    for record in sorted(records, key=lambda r: r["method"]):
        curve = np.asarray([np.nan if v is None else v for v in record["curve"]], float)
        if curve.size == 0:
            continue
        label, colour, marker = looks[record["method"]]
        if test == "sparse_recovery":
            x = np.arange(0, curve.size + 1)
            y = np.concatenate([[0.0], curve])
            ax.plot(x, y, label=label, color=colour, marker=marker, markersize=4,
                    linewidth=1.5)
        else:
            x = np.arange(curve.size)
            first = 1 if test in LOG_X else 0
            ax.plot(x[first:], curve[first:], label=label, color=colour, linewidth=1.3)
        comparison = setups.comparison(record)
        if comparison["comparable"]:
            ax.plot([comparison["x"]], [comparison["paper"]], linestyle="none", marker="*",
                    markersize=11, markerfacecolor="none", markeredgecolor=colour or "k")
    ax.set_title(panel_title(test, setting, records), fontsize=10)
    ax.grid(True, alpha=0.4)
    draws = _draws(test, records)
    if test == "sparse_recovery":
        ax.set_xlabel("Layer")
        ax.set_ylabel("NMSE (dB)")
    elif test == "lasso":
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Iteration")
        ax.set_ylabel("Modified relative loss (19)")
    elif test == "rastrigin":
        ax.set_xscale("log")
        ax.set_xlabel("Iteration")
        ax.set_ylabel("Loss" + (f" ({draws})" if draws else ""))
    elif test == "minimax":
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Half-step")
        ax.set_ylabel("Distance to the saddle point" + (f"\n({draws})" if draws else ""))
    else:
        ax.set_yscale("log")
        ax.set_xlabel("Iteration")
        ax.set_ylabel("Training loss" + (f" ({draws})" if draws else ""))


def group_by_panel(records):
    panels = {}
    for record in records:
        if not record.get("curve"):
            continue
        panels.setdefault(panel_key(record), []).append(record)
    return panels


def plot_results(records, out_dir):
    """Writes one PNG per paper-figure panel covered by ``records``; returns their paths.

    File names are ``fig<N>_<test>_<setting>.png`` (N = the paper's figure number).
    """
    olog.ensure_dir(os.path.abspath(out_dir))
    paths = []
    for (test, setting), panel_records in sorted(group_by_panel(records).items()):
        caption = textwrap.wrap(panel_caption(test, panel_records), 125)
        height = 4.4 + 0.14 * len(caption)
        fig, ax = plt.subplots(figsize=(6.4, height))
        plot_panel(ax, panel_records, test, setting)
        ax.legend(fontsize=8, ncol=2)
        fig.text(0.01, 0.01, "\n".join(caption), ha="left", va="bottom", fontsize=6.5,
                 color="0.25")
        fig.tight_layout(rect=(0, (0.14 * len(caption) + 0.05) / height, 1, 1))
        number = FIGURE_OF_TEST.get(test, 0)
        path = os.path.join(out_dir, f"fig{number}_{test}_{setting}.png")
        try:
            olog.atomic_write_with(path, lambda h, f=fig: f.savefig(h, format="png", dpi=110))
        finally:
            plt.close(fig)
        paths.append(path)
    return paths


def plot_safeguard(curves, path, *, metric="nmse_db", rejected=None, title=None,
                   trained_depth=None):
    """Safe-L2O comparison: ``curves`` maps a label (``learned``, ``safeguarded``,
    ``fista``, ...) to a per-iteration curve (index = iteration, from ``x_0``); ``metric``
    is ``nmse_db`` (linear y), ``relative_loss``/``objective`` (log y) or ``loss``.  With
    ``rejected`` (the fraction of instances whose learned step was rejected, per iteration)
    a second panel shows it.  ``trained_depth`` marks the model's trained depth.  The PNG
    is written atomically; returns ``path``."""
    panels = 2 if rejected is not None else 1
    fig, axes = plt.subplots(panels, 1, figsize=(6.4, 4.4 + 1.8 * (panels - 1)),
                             sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1][:panels]})
    ax = axes[0][0]
    colours = {"learned": "#1f5fd6", "safeguarded": "#228b22", "fista": "#e377c2",
               "ista": "#8c564b"}
    for label, curve in curves.items():
        curve = np.asarray(curve, np.float64)
        ax.plot(np.arange(len(curve)), curve, label=label, color=colours.get(label),
                linestyle="--" if label in ("fista", "ista") else "-")
    if metric in ("relative_loss", "objective"):
        ax.set_yscale("log")
    # a diverging plain model would squash the other curves: the y range follows them
    others = [np.asarray(c, np.float64) for label, c in curves.items() if label != "learned"]
    finite = np.concatenate([c[np.isfinite(c)] for c in others]) if others else np.array([])
    if finite.size:
        every = np.concatenate([np.asarray(c, np.float64) for c in curves.values()])
        every = every[np.isfinite(every)]
        if metric in ("relative_loss", "objective"):
            positive = every[every > 0]
            if positive.size:
                ax.set_ylim(positive.min() / 2, finite.max() * 10)
        else:
            span = max(finite.max() - every.min(), 1.0)
            ax.set_ylim(every.min() - 0.05 * span, finite.max() + 0.15 * span)
    ax.set_ylabel({"nmse_db": "NMSE (dB)", "relative_loss": "relative loss (19)",
                   "objective": "objective", "loss": "loss"}.get(metric, metric))
    if trained_depth:
        for a in axes[:, 0]:
            a.axvline(trained_depth, color="0.6", linewidth=0.8, linestyle=":")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    if rejected is not None:
        axes[1][0].plot(np.arange(1, len(rejected)), rejected[1:], color="#d62728")
        axes[1][0].set_ylabel("rejected\nfraction")
        axes[1][0].set_ylim(-0.05, 1.05)
    axes[-1][0].set_xlabel("iteration")
    return _save_png(fig, path)


def plot_matching_curves(curves, path, *, title=None, ylabel="loss", xlabel="step"):
    """Two (or more) curves that should agree, e.g. a loss curve of two implementations:
    the curves on top (the first solid, the others dashed) and, below, the absolute
    difference of each other curve from the first (log axis; an exact zero is drawn at
    the axis floor).  The PNG is written atomically; returns ``path``."""
    labels = list(curves)
    first = np.asarray(curves[labels[0]], np.float64)
    fig, axes = plt.subplots(2, 1, figsize=(6.4, 5.2), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1.3]})
    for k, label in enumerate(labels):
        curve = np.asarray(curves[label], np.float64)
        axes[0].plot(np.arange(len(curve)), curve, label=label,
                     linestyle="-" if k == 0 else "--", linewidth=1.6 if k == 0 else 1.0)
        if k:
            diff = np.abs(curve - first)
            floor = diff[diff > 0].min() / 10 if np.any(diff > 0) else 1e-12
            axes[1].plot(np.arange(len(curve)), np.maximum(diff, floor), linewidth=0.8,
                         label=f"|{label} - {labels[0]}|")
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("|difference|")
    axes[1].legend(fontsize=7)
    axes[1].set_xlabel(xlabel)
    if title:
        axes[0].set_title(title, fontsize=10)
    return _save_png(fig, path)


def _save_png(fig, path):
    """Lays out ``fig``, writes it to ``path`` as a PNG atomically and closes it."""
    fig.tight_layout()
    try:
        olog.atomic_write_with(path, lambda h: fig.savefig(h, format="png", dpi=110))
    finally:
        plt.close(fig)
    return path

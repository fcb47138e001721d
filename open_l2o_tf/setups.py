"""What a run ran (size, depth, horizon, draws, training budget), and whether that is the
setting of the paper's value, so that a figure or a report compares with the paper only
where the two are the same experiment.

A ``results.json`` record states its setup under ``setup`` (``m``/``n`` the problem size,
``layers`` the unrolled depth, ``iterations`` or ``half_steps`` the horizon, ``instances``,
``starts``, ``runs``, ``test_samples`` the draws); :func:`ran` reads it, and for a record
written without it derives what it can from the record's curve and flags (``config``)
and the ``meta.json`` of its data folder.  The paper's setup of each figure panel is in
``reference_numbers.json`` (:func:`open_l2o_tf.reference.paper_setup`).

A run is *comparable* with the paper's value (:func:`comparison`) when its size
(``m``, ``n``) and depth (``layers``) are the paper's, its horizon reaches the paper's
(the value is then read at the paper's iteration / layer, not at the run's last), and its
training budget is the paper's (``--preset=paper``) or it trains nothing (a classic
method).  The number of draws (instances, runs) is reported, not required: it changes the
noise of a mean, not what is measured.

>>> describe("sparse_recovery", {"m": 64, "n": 128, "layers": 8})
'64x128, 8 layers'
"""
import json
import math
import os

from open_l2o_tf import reference

SIZE_KEYS = ("m", "n", "layers")       # must equal the paper's
HORIZON = {"sparse_recovery": "layers", "lasso": "iterations", "rastrigin": "iterations",
           "nn_training": "iterations", "minimax": "half_steps"}


def _meta(data_dir):
    """The ``meta.json`` of a data folder (``{}`` when it is missing or unreadable)."""
    if not data_dir:
        return {}
    try:
        with open(os.path.join(data_dir, "meta.json"), encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _int(value):
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def ran(record):
    """The setup ``record`` ran: its ``setup`` dict, completed from its curve, flags and
    data folder for a record written without one; plus ``preset`` and ``trained`` (whether
    the method was trained or loaded, so that its training budget matters)."""
    test = record.get("test")
    curve = record.get("curve") or []
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    out = {k: v for k, v in (record.get("setup") or {}).items() if v is not None}
    if test in ("sparse_recovery", "lasso") and not {"m", "n"} <= set(out):
        data_dir = config.get("data_dir") or (os.path.join(config["workdir"], "data")
                                              if config.get("workdir") else None)
        meta = _meta(data_dir)
        for key in ("m", "n"):
            if _int(meta.get(key)) is not None:
                out.setdefault(key, _int(meta[key]))
    if test == "sparse_recovery":
        out.setdefault("layers", _int(config.get("num_layers")) or len(curve) or None)
    elif test == "rastrigin":
        setting = str(record.get("setting", "")).lstrip("n=")
        out.setdefault("n", _int(config.get("n")) or (int(setting) if setting.isdigit()
                                                       else None))
    if test in ("lasso", "rastrigin", "nn_training") and curve:
        out.setdefault("iterations", len(curve) - 1)
    if test == "nn_training" and isinstance(record.get("final_per_run"), list):
        out.setdefault("runs", len(record["final_per_run"]))
    if test == "minimax" and curve:
        out.setdefault("half_steps", len(curve) - 1)
    for key, flag in (("instances", "test_instances"), ("starts", "starts"),
                      ("restarts", "restarts")):
        if _int(config.get(flag)) is not None and test in ("rastrigin", "minimax"):
            out.setdefault(key, _int(config[flag]))
    out = {k: v for k, v in out.items() if v is not None}
    out["preset"] = record.get("preset")
    out["trained"] = bool(record.get("train_steps") or config.get("load"))
    return out


def _count(value, one, many):
    if isinstance(value, str):      # a range of a panel's runs, e.g. "3-8"
        return f"{value} {many}"
    return f"{value:,} {one if value == 1 else many}"


def describe(test, setup, keys=None):
    """``setup`` in words, e.g. ``'64x128, 8 layers'`` or ``'25x50, 1,000 iterations'``
    (only ``keys`` when given)."""
    s = {k: v for k, v in setup.items() if keys is None or k in keys}
    parts = []
    if "m" in s and "n" in s:
        parts.append(f"{s['m']}x{s['n']}")
    elif test == "rastrigin" and "n" in s:
        parts.append(f"n = {s['n']}")
    if "layers" in s:
        parts.append(_count(s["layers"], "layer", "layers"))
    if "iterations" in s:
        parts.append(_count(s["iterations"], "iteration", "iterations"))
    if "half_steps" in s:
        parts.append(_count(s["half_steps"], "half-step", "half-steps"))
    if "instances" in s:
        draws = _count(s["instances"], "instance", "instances")
        for key in ("starts", "restarts"):
            if key in s:
                draws += f" x {_count(s[key], 'start', 'starts')}"
        parts.append(draws)
    if "runs" in s:
        parts.append(_count(s["runs"], "run", "runs"))
    return ", ".join(parts)


def budget(setup, record=None):
    """The training budget in words: ``''`` for an untrained method, else the preset's
    (``'quick training budget (1,200 steps)'``)."""
    if not setup.get("trained"):
        return ""
    steps = (record or {}).get("train_steps")
    text = f"{setup.get('preset') or 'unknown'} training budget"
    return text + (f" ({steps:,} steps)" if isinstance(steps, int) and steps else "")


def horizon_label(test, paper):
    """Where the paper's value stands: ``'layer 16'``, ``'iteration 10,000'``."""
    key = HORIZON.get(test)
    if key == "layers" and "layers" in paper:
        return f"layer {paper['layers']}"
    if key in paper:
        return f"{'half-step' if key == 'half_steps' else 'iteration'} {paper[key]:,}"
    return "the paper's horizon"


def comparison(record):
    """How ``record`` stands against the paper's value: a dict with ``paper`` (the value or
    None), ``paper_setup``, ``ran`` (:func:`ran`), ``comparable`` (bool), ``index`` and
    ``x`` (the curve index and the figure's x of the paper's value, when comparable),
    ``ours`` (our value there, else our final value) and ``reason`` (why not comparable,
    ``'ran X, paper Y'``)."""
    test, setting, method = record.get("test"), record.get("setting"), record.get("method")
    setup = ran(record)
    curve = record.get("curve") or []
    out = {"paper": None, "paper_setup": None, "ran": setup, "comparable": False,
           "index": None, "x": None, "ours": record.get("final"), "reason": None}
    try:
        out["paper"] = reference.lookup(test, setting, method)
        paper = reference.paper_setup(test, setting)
    except Exception:   # pylint: disable=broad-except  an unknown test: no paper value
        paper = None
    out["paper_setup"] = paper
    if out["paper"] is None or paper is None:
        out["reason"] = "the paper has no value for this method and setting"
        return out
    why = []
    for key in SIZE_KEYS:
        if key in paper and setup.get(key) != paper[key]:
            why.append(key)
    key = HORIZON.get(test)
    if key != "layers" and key in paper and (setup.get(key) or 0) < paper[key]:
        why.append(key)
    if setup.get("trained") and setup.get("preset") != "paper":
        why.append("budget")
    if not why:
        index = paper["layers"] - 1 if key == "layers" else paper[key]
        if index < len(curve) and curve[index] is not None:
            out.update(comparable=True, index=index, x=index + 1 if key == "layers" else index,
                       ours=curve[index])
            return out
        why.append("curve")
    keys = [k for k in paper if k in SIZE_KEYS or k == key]
    ours, theirs = describe(test, setup, keys), describe(test, paper, keys)
    extra = budget(setup) if "budget" in why else ""
    if "curve" in why:
        extra = "its curve stops before " + horizon_label(test, paper)
    out["reason"] = ("ran " + ", ".join(p for p in (ours, extra) if p)
                     + f"; paper {theirs}" + (", paper training budget" if "budget" in why
                                              else ""))
    return out


def fmt(value, digits=4):
    """A value with ``digits`` significant digits (scientific when small or large), so that
    values that differ print differently: ``8.2e-05``, ``0.001812``, ``-34.01``; ``–``
    for None."""
    if value is None:
        return "–"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"

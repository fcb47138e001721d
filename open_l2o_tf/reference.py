"""The paper's reference numbers (Figures 5-8) and "ours vs paper" rows.

The values were read off the paper's figures by eye (see ``reference_numbers.json`` for
the tolerance of each test).  They are references to compare against and are never used as
outputs.

>>> lookup("sparse_recovery", "noiseless", "alista")
-78.0
"""
import functools
import json
import math
import os

from open_l2o_tf.errors import UserError

_FILE = os.path.join(os.path.dirname(__file__), "reference_numbers.json")


@functools.lru_cache(maxsize=1)
def _table():
    with open(_FILE, encoding="utf-8") as handle:
        return json.load(handle)


def tests():
    """Names of the tests that have reference numbers."""
    return sorted(_table()["tests"])


def lookup(test, setting, method, default=None):
    """The paper's value for ``(test, setting, method)``, or ``default`` when the paper has none.

    Rastrigin settings may be given as ``"n2"``/``"n10"``, ``2``/``10`` or ``"n=2"``.
    An unknown ``test`` is a :class:`UserError`; an unknown cell returns ``default``.
    """
    table = _table()["tests"]
    if test not in table:
        raise UserError(f"unknown test {test!r}; expected one of {sorted(table)}")
    setting = normalise_setting(test, setting)
    value = table[test]["values"].get(setting, {}).get(method)
    return default if value is None else float(value)


def paper_setup(test, setting):
    """The setting of the paper's values for ``(test, setting)``: the problem size (``m``,
    ``n``; Rastrigin's ``n``), depth (``layers``), horizon (``iterations``) and draws
    (``instances``, ``starts``, ``runs``), or None when the paper has no such panel.

    >>> paper_setup("sparse_recovery", "noiseless")
    {'m': 256, 'n': 512, 'layers': 16}
    """
    table = _table()["tests"]
    if test not in table:
        return None
    value = table[test].get("setup", {}).get(normalise_setting(test, setting))
    return dict(value) if value else None


def normalise_setting(test, setting):
    if test == "rastrigin":
        text = str(setting).replace("n=", "").replace("n", "")
        return f"n{text}"
    return str(setting)


def tolerance(test):
    """``{"kind": "absolute"|"relative", "value": float}`` for the test's read-off error."""
    return dict(_table()["tests"][test]["tolerance"])


def compare(test, setting, method, ours):
    """A row dict ``{ours, paper, difference, within_tolerance}`` for reports.

    The difference is ``ours - paper`` for dB/linear tests and the ratio ``ours / paper``
    (in decades, ``log10``) for the log-scale tests.
    """
    paper = lookup(test, setting, method)
    row = {"test": test, "setting": setting, "method": method, "ours": ours, "paper": paper,
           "difference": None, "within_tolerance": None}
    if paper is None or ours is None or not math.isfinite(ours):
        return row
    tol = tolerance(test)
    if tol["kind"] == "relative":
        if ours > 0 and paper > 0:
            row["difference"] = math.log10(ours / paper)
            row["difference_kind"] = "decades"
            row["within_tolerance"] = abs(ours / paper - 1.0) <= tol["value"]
    else:
        row["difference"] = ours - paper
        row["difference_kind"] = "absolute"
        row["within_tolerance"] = abs(ours - paper) <= tol["value"]
    return row

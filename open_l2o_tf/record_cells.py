"""The cells of the reproduction record: the paper's Figures 5-8 (82 cells), their metrics,
the statuses a row can have, and an empty row (:mod:`open_l2o_tf.reproduction`).
"""

from open_l2o_tf import reference


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


def _order(row):
    figure = row["figure"]
    _, settings, methods = FIGURES[figure]
    return (figure, settings.index(row["setting"]), methods.index(row["method"]))

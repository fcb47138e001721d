"""The paper preset's meta-training budgets: the docs table is the code's, and the budget
reaches the trainer's model selection."""
import os

from model_free.meta import training
from open_l2o_tf import budgets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_docs_budget_table_is_the_codes():
    with open(os.path.join(ROOT, "docs", "budgets.md"), encoding="utf-8") as handle:
        page = handle.read()
    assert budgets.markdown_table() in page


def test_figures_6_and_7_follow_the_papers_text_and_figure_8_the_scripts():
    for test in ("lasso", "rastrigin"):
        for name in ("l2o_dm", "l2o_rnnprop", "l2o_enhanced", "l2o_scale"):
            b = budgets.paper_budget(test, name)
            assert (b.episodes, b.unroll, b.truncation) == (100, 1000, 20), (test, name)
    b = budgets.paper_budget("nn_training", "l2o_dm")
    assert (b.episodes, b.unroll) == (10000, 100)


def test_the_budget_sets_model_selection():
    import model_free  # noqa: F401  registers the learned names
    rnnprop = budgets.paper_budget("rastrigin", "l2o_rnnprop")
    settings = training.selection_settings("l2o_rnnprop", "last_truncation", 100, rnnprop)
    assert (settings["eval_every"], settings["eval_instances"]) == (10, 20)
    enhanced = budgets.paper_budget("lasso", "l2o_enhanced")
    settings = training.selection_settings("l2o_enhanced", "last_truncation", 100, enhanced)
    assert settings["eval_every"] == 10       # the DM class's own period is 100
    assert training.selection_settings("l2o_enhanced", "last_truncation", 100)["eval_every"] == 100

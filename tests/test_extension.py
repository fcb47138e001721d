"""A new learned optimizer or model needs no edit in the shared pieces: meta-training takes
its recipe from its class (or its registry entry), plotting derives a style for its name
(the test-only entries of ``tests/extra_registry.py``)."""
import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest

import model_free  # noqa: F401  (registers the learned optimizers)
import tests.extra_registry  # noqa: F401  (dm_with_recipe, lista_copy)
from model_free import training
from open_l2o_tf import plotting, registry
from open_l2o_tf import logging as olog
from open_l2o_tf.optimizees.quadratic import Quadratic


def _meta_train(name, tmp_path, **kw):
    keras.utils.set_random_seed(0)
    return training.meta_train_or_load(
        name, Quadratic(dim=3, batch_size=4), synthetic=True, workdir=str(tmp_path),
        episodes=2, unroll=4, truncation=2, seed=7, progress=None,
        selection="horizon_mean", **kw)


def test_meta_training_uses_the_class_recipe(tmp_path):
    cls = tests.extra_registry.DmWithRecipe
    cls.calls.clear()
    opt, info = _meta_train("dm_with_recipe", tmp_path, meta_lr=0.01)
    assert len(cls.calls) == 1
    call = cls.calls[0]
    assert call["opt"] is opt and call["seed"] == 7
    # the recipe's meta-optimizer (SGD at --meta_lr) is the one that trained the network
    meta = call["meta_optimizer"]
    assert isinstance(meta, keras.optimizers.SGD)
    assert float(meta.learning_rate) == pytest.approx(0.01)
    assert int(meta.iterations) == info["train_steps"] // 2 > 0


def test_meta_training_uses_the_entry_recipe(tmp_path):
    """A name that trains a shared class its own way (as l2o_enhanced) names its recipe in
    its registry entry; it wins over the class's."""
    seen = []

    def recipe(opt, *, seed=0, horizons=None, meta_lr=None):
        seen.append((opt, seed, horizons, meta_lr))
        return dict(meta_lr=0.123)

    registry.register("learned", "dm_entry_recipe", tests.extra_registry.DmWithRecipe,
                      interface="update", meta_training=recipe)
    try:
        assert training.meta_training_recipe("dm_entry_recipe") is recipe
        opt, _ = _meta_train("dm_entry_recipe", tmp_path, horizons=(4,))
        assert seen == [(opt, 7, (4,), None)]
    finally:
        registry.unregister("learned", "dm_entry_recipe")
    assert training.meta_training_recipe("l2o_enhanced") is model_free.dm.enhanced_meta_training
    # the paper's: L2O-Scale's own recipe, L2O-DM / RNNprop the default one
    from model_free.scale import L2OScale
    assert training.meta_training_recipe("l2o_scale") == L2OScale.meta_training
    recipe_dm = training.meta_training_recipe("l2o_dm")
    from model_free.recipe import DEFAULT_META_LR
    assert recipe_dm(None, meta_lr=None).meta_lr == DEFAULT_META_LR
    assert recipe_dm(None, meta_lr=0.5).meta_lr == 0.5


def test_a_registered_name_gets_its_own_style():
    paper_colours = {colour for _, colour, _ in plotting.STYLE.values()}
    label, colour, marker = plotting.style("lista_copy")
    assert label == "lista_copy" and colour not in paper_colours and marker
    assert plotting.style("lista_copy") == (label, colour, marker)      # stable
    assert plotting.style("dm_with_recipe")[1] not in paper_colours
    for name, look in plotting.STYLE.items():                          # the paper's kept
        assert plotting.style(name) == look
    # an entry may declare its style
    registry.register("model", "lista_styled", tests.extra_registry.ListaCopy,
                      style=("My LISTA", "#123456", "*"))
    try:
        assert plotting.style("lista_styled") == ("My LISTA", "#123456", "*")
    finally:
        registry.unregister("model", "lista_styled")


def test_the_panel_draws_a_new_name_in_its_style():
    records = [olog.make_result("sparse_recovery", m, "noiseless", "quick", "nmse_db",
                                np.linspace(-5, -20, 4)) for m in ("alista", "lista_copy")]
    fig, ax = plt.subplots()
    plotting.plot_panel(ax, records, "sparse_recovery", "noiseless")
    drawn = {line.get_label(): (line.get_color(), line.get_marker()) for line in ax.lines}
    plt.close(fig)
    _, colour, marker = plotting.style("lista_copy")
    assert drawn["lista_copy"] == (colour, marker)
    assert drawn["ALISTA"] == ("#228b22", "o")


def test_two_new_names_in_one_panel_get_different_colours():
    """Derived colours are hashed from the name; two that collide (lista_copy and
    dm_with_recipe do) are told apart within a panel, and the paper's are kept."""
    assert plotting.style("lista_copy")[1] == plotting.style("dm_with_recipe")[1]
    records = [olog.make_result("lasso", m, "lasso_25x50", "quick", "relative_loss",
                                np.linspace(10, 1, 5))
               for m in ("fista", "lista", "lista_copy", "dm_with_recipe")]
    fig, ax = plt.subplots()
    plotting.plot_panel(ax, records, "lasso", "lasso_25x50")
    colours = {line.get_label(): line.get_color() for line in ax.lines}
    plt.close(fig)
    assert len(set(colours.values())) == 4
    assert colours["LISTA"] == plotting.STYLE["lista"][1]

"""A new learned optimizer or model needs no edit in the shared pieces: meta-training takes
its recipe from its class (or its registry entry), plotting derives a style for its name
(the test-only entries of ``tests/extra_registry.py``)."""
import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest

import model_free  # noqa: F401  (registers the learned optimizers)
import tests.extra_registry  # noqa: F401  (dm_with_recipe, lista_copy)
from model_free.meta import training
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
    assert (training.meta_training_recipe("l2o_enhanced")
            is model_free.rules.dm.enhanced_meta_training)
    # the paper's: L2O-Scale's own recipe, L2O-DM / RNNprop the default one
    from model_free.rules.scale import L2OScale
    assert training.meta_training_recipe("l2o_scale") == L2OScale.meta_training
    recipe_dm = training.meta_training_recipe("l2o_dm")
    from model_free.meta.recipe import DEFAULT_META_LR
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


_TRANSFORM_SCRIPT = r'''
import json, sys
import numpy as np
import tensorflow as tf
import tests.extra_registry               # registers sign_gd (classic, transform=True)
from open_l2o_tf.optimizees.rastrigin import Rastrigin

rng = np.random.default_rng(0)
out = {}
A = rng.normal(size=(3, 5)).astype(np.float32)
y = rng.normal(size=(4, 3)).astype(np.float32)
lam, lr = 0.005, 0.01
if sys.argv[1] == "lasso":       # one command module a process (each defines its flags)
  from run import lasso          # its pieces take arguments (flags unparsed)
  curve = np.asarray(lasso.run_classic("sign_gd", A, y, lam, 6, lr=lr, grad_reduction="sum",
                                     jit=False))
  x, ref = np.zeros((4, 5)), []        # sign GD by hand (the subgradient of |x| at 0 is 0)
  for t in range(7):
      r = x @ A.T - y
      ref.append(0.5 * (r ** 2).sum(1) + lam * np.abs(x).sum(1))
      x = x - lr * np.sign(r @ A + lam * np.sign(x))
  out = {"curve": curve.tolist(), "ref": np.stack(ref).tolist()}
  # a proximal solver registered in one line (proximal=True) runs by name too
  from open_l2o_tf.classic import ista_fista
  damped = lasso.run_classic("damped_ista", A, y, lam, 6, ista_step="spectral")
  step = ista_fista.step_size(A, "spectral")
  out["damped"] = np.asarray(damped).tolist()
  out["damped_ref"] = ista_fista.ista(A, y, lam, 6, step=0.5 * step)[1].numpy().tolist()
  out["ista"] = lasso.run_classic("ista", A, y, lam, 6, ista_step="spectral").tolist()
else:
  from run import rastrigin
  family = Rastrigin(n=2, batch_size=4)
  test = family.sample_instance(tf.constant([1, 2]))
  x0 = [tf.constant(rng.normal(size=(4, 2)).astype(np.float32))]
  rcurve = np.asarray(rastrigin.run_classic("sign_gd", family, test, x0, 3, lr=lr,
                                            grad_batch=1))
  with tf.GradientTape() as tape:
      tape.watch(x0[0])
      loss = tf.reduce_sum(family.instance_losses(x0, test))
  x1 = x0[0] - lr * tf.sign(tape.gradient(loss, x0[0]))
  out = {"curve": rcurve[1].tolist(),
         "ref": family.instance_losses([x1], test).numpy().tolist()}
print(json.dumps(out))
'''


def test_a_transform_registered_in_one_line_runs_in_every_command(tmp_path):
    """``tests/extra_registry.py`` registers sign GD (``transform=True``) in one line: the
    Lasso and Rastrigin pieces run it by name with the step of its equation (and the Lasso
    piece a proximal solver registered the same way, ``proximal=True``), and
    ``run.nn_training`` (which named SGD/Adam/RMSProp in a dict before) trains a network
    with it, ``--lr`` included."""
    import json
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=root)
    for command, tolerance in (("lasso", dict(rtol=1e-4, atol=1e-5)),
                               ("rastrigin", dict(rtol=1e-5))):
        proc = subprocess.run([sys.executable, "-c", _TRANSFORM_SCRIPT, command], cwd=root,
                              env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        np.testing.assert_allclose(out["curve"], out["ref"], **tolerance)
        if command == "lasso":
            np.testing.assert_array_equal(out["damped"], out["damped_ref"])
            assert not np.allclose(out["damped"], out["ista"])
    from tests.test_test_runs import _mnist    # a tiny generated MNIST
    mnist, work = str(tmp_path / "mnist"), str(tmp_path / "w")
    _mnist(mnist)
    proc = subprocess.run([sys.executable, "-m", "run.nn_training",
                           "--import=tests.extra_registry", "--optimizer=sign_gd",
                           "--lr=0.01", "--problem=mnist_mlp_relu", "--steps=5", "--runs=1",
                           f"--mnist_dir={mnist}", f"--workdir={work}"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.load(open(os.path.join(work, "results.json")))
    assert record["method"] == "sign_gd" and record["config"]["lr"] == 0.01
    assert len(record["curve"]) == 6 and np.isfinite(record["curve"]).all()
    proc = subprocess.run([sys.executable, "-m", "run.rastrigin",
                           "--import=tests.extra_registry", "--optimizer=nag_ls", "--lr=0.1",
                           f"--workdir={tmp_path / 'r'}"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert "error: --lr applies to adam/rmsprop/sign_gd only, not --optimizer=nag_ls" \
        in proc.stderr, proc.stderr[-1000:]


_LINE_SEARCH_SCRIPT = r'''
import json
import numpy as np
import tensorflow as tf
import tests.extra_registry      # registers cautious_gd_ls (classic, line_search=True)
from open_l2o_tf.classic.line_search import gd_line_search
from open_l2o_tf.optimizees.rastrigin import Rastrigin
from run import rastrigin

family = Rastrigin(n=2, batch_size=4)
test = family.sample_instance(tf.constant([1, 2]))
x0 = [tf.constant(np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32))]
curve = rastrigin.run_classic("cautious_gd_ls", family, test, x0, 5)
ref = gd_line_search(lambda p, batch=None: family.instance_losses(p, test), x0, 5,
                     initial_step=0.1, shrink=0.8)[1]
half = rastrigin.run_classic("gd_ls", family, test, x0, 5)
batch = rastrigin.run_classic("cautious_gd_ls", family, test, x0, 5,
                              line_search_scope="batch")
print(json.dumps({"curve": np.asarray(curve).tolist(), "ref": np.asarray(ref).tolist(),
                  "gd_ls": np.asarray(half).tolist(), "batch": np.asarray(batch).tolist()}))
'''


def test_a_line_search_registered_in_one_line_runs_in_rastrigin(tmp_path):
    """``tests/extra_registry.py`` registers a line search (``line_search=True``) in one
    line: run.rastrigin's piece runs it by name (the curve of ``gd_line_search`` with its
    shrink factor, not gd_ls's), per instance and on the batch mean, and the command names
    it among the line searches when it refuses ``--line_search_scope`` for Adam."""
    import json
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=root)
    proc = subprocess.run([sys.executable, "-c", _LINE_SEARCH_SCRIPT], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(out["curve"], out["ref"])
    assert not np.array_equal(out["curve"], out["gd_ls"])
    batch = np.asarray(out["batch"])        # (steps + 1, starts): batch means, decreasing
    assert batch.shape == (6, 1) and (np.diff(batch[:, 0]) <= 0).all()
    proc = subprocess.run([sys.executable, "-m", "run.rastrigin",
                           "--import=tests.extra_registry", "--optimizer=adam",
                           "--line_search_scope=batch", f"--workdir={tmp_path / 'a'}"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 2
    assert ("error: --line_search_scope applies to gd_ls/nag_ls/cautious_gd_ls only, not "
            "--optimizer=adam") in proc.stderr, proc.stderr[-1000:]

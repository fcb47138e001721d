"""The contracts every registered name must keep, parametrised over the registry: a model
or learned optimizer registered in one line (``tests/extra_registry.py`` registers a copy
of LISTA) is tested here with no new test code.

* unrolled models (kind ``"model"``): per-layer outputs of shape (b, n) for every depth,
  the outputs of a shallower call are a prefix of the deeper ones, ``layer_variables``
  partitions the trainable variables and layer t's variables reach no output before t,
  ``get_config`` round trip, one small gradient step lowers the training loss;
* learned optimizers (kind ``"learned"``), by the ``interface`` of their entry:
  ``"update"`` (state keeps its structure and shapes, steps shaped like the parameters,
  and, where the entry claims ``coordinatewise``, a coordinate's step depends on that
  coordinate only), ``"swarm"`` and ``"twin"`` (their own step functions).
"""
import inspect
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import model_based  # noqa: F401  (registers the models)
import model_free  # noqa: F401  (registers the learned optimizers)
import open_l2o_tf.classic  # noqa: F401  (registers the classic baselines)
import tests.extra_registry  # noqa: F401  (the test-only copy of LISTA)
from open_l2o_tf import registry
from open_l2o_tf.data import alista_weight, sparse_recovery
from open_l2o_tf.optimizees import minimax
from open_l2o_tf.optimizees.rastrigin import Rastrigin

M, N, B, T = 8, 16, 4, 3
MODELS = registry.names("model")
LEARNED = registry.names("learned")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)


def test_the_test_only_entry_is_in_the_suite():
    assert "lista_copy" in MODELS and "lista" in MODELS
    assert registry.get("model", "lista_copy") is tests.extra_registry.ListaCopy


def test_registry_mechanism():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("model", "lista", "somewhere:Else")
    registry.register("model", "lista", registry.TABLES["model"]["lista"])   # same: no-op
    assert registry.commands("model", "lista") == ("sparse_recovery", "lasso")  # info kept
    with pytest.raises(ValueError, match="identifiers"):
        registry.register("model", "bad name", "a:b")
    assert registry.kind_of("adam") == "classic" and registry.kind_of("nope") is None
    assert "l2o_dm" in registry.names("learned", coordinatewise=True)
    assert "l2o_scale" not in registry.names("learned", coordinatewise=True)
    # the core names no family: no "model_based.x:Y" / "model_free.x:Y" target in it
    source = open(registry.__file__).read()
    assert not re.search(r"(model_based|model_free)\.\w+:\w", source)


@pytest.fixture(scope="module")
def problem():
    A = sparse_recovery.gaussian_matrix(M, N, 5)
    W = alista_weight.analytic_weight(A)
    y, x = sparse_recovery.sample_measurements(A, 6, B)
    return A, W, y, x


def build(name, A, W):
    """A tiny instance, built as the commands build it (``build_model``: ``W`` when the
    class says ``needs_W``, options only where the constructor names them)."""
    from model_based.factory import build_model
    return build_model(name, A, W, T, lam=0.4, faithful_init=True, sigma2=0.0, alti=5.0,
                       gain="relu", not_an_option_of_any_model=1)


@pytest.mark.parametrize("name", MODELS)
def test_unrolled_model_contract(problem, name):
    A, W, y, x = problem
    model = build(name, A, W)
    from model_based.base import UnrolledModel
    assert isinstance(model, UnrolledModel) and model.num_layers == T
    # what the commands ask the class (never the name)
    cls = type(model)
    for attribute in ("needs_W", "support_selection", "lasso_only"):
        assert isinstance(getattr(cls, attribute), bool)
    assert int(cls.layer_flops(M, N, B)) > 0
    if cls.needs_W:
        assert "W" in inspect.signature(cls.__init__).parameters

    # shapes, per-layer outputs, prefix property
    outs = model(y)
    assert len(outs) == T and all(tuple(o.shape) == (B, N) for o in outs)
    assert all(np.all(np.isfinite(o.numpy())) for o in outs)
    for depth in range(1, T):
        shallow = model(y, num_layers=depth)
        assert len(shallow) == depth
        for a, b in zip(shallow, outs):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)

    # layer_variables: a partition of the trainable variables, none empty, causal
    per_layer = [model.layer_variables(t) for t in range(T)]
    assert all(per_layer), "every layer owns at least one variable"
    ids = [id(v) for vs in per_layer for v in vs]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(v) for v in model.trainable_variables}
    for t in range(1, T):
        with tf.GradientTape() as tape:
            early = tf.reduce_sum(tf.square(model(y, num_layers=t)[-1]))
        grads = tape.gradient(early, per_layer[t])
        assert all(g is None or not np.any(g.numpy()) for g in grads), \
            f"layer {t}'s variables change an earlier output"

    # get_config round trip (off the initialisation)
    rng = np.random.default_rng(0)
    for v in model.trainable_variables:
        v.assign(v * (1.0 + 0.05 * rng.uniform(-1, 1, v.shape)).astype(np.float32))
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(y)[-1].numpy(), model(y)[-1].numpy(), rtol=1e-5,
                               atol=1e-6)
    assert clone.get_config() == model.get_config()

    # one small normalised gradient step on every variable lowers the training loss
    variables = model.trainable_variables

    def loss():
        return tf.reduce_mean(tf.reduce_sum(tf.square(model(y)[-1] - x), axis=1))

    with tf.GradientTape() as tape:
        before = loss()
    grads = tape.gradient(before, variables)
    norm = np.sqrt(sum(float(tf.reduce_sum(tf.square(g))) for g in grads if g is not None))
    assert norm > 0
    for v, g in zip(variables, grads):
        if g is not None:
            v.assign_sub(1e-3 * g / norm)
    assert float(loss()) < float(before)


def _params():
    return [tf.constant(np.random.default_rng(1).normal(size=(3, 4)), tf.float32),
            tf.constant(np.random.default_rng(2).normal(size=(5,)), tf.float32)]


def _shapes(structure):
    return [tuple(t.shape) for t in tf.nest.flatten(structure)]


def _contract_update(name, cls, info):
    keras.utils.set_random_seed(0)      # the rule's initial weights: one fixed draw
    opt = cls()
    params = _params()
    grads = [0.5 * p + 0.1 for p in params]
    state = opt.initial_state(params)
    steps, new_state = opt.update(grads, state, params)
    assert [tuple(s.shape) for s in steps] == [tuple(p.shape) for p in params]
    assert all(np.all(np.isfinite(s.numpy())) for s in steps)
    tf.nest.assert_same_structure(state, new_state)
    assert _shapes(new_state) == _shapes(state)
    assert any(np.any(s.numpy() != 0) for s in steps)
    if info.get("coordinatewise"):
        n = sum(int(np.prod(p.shape)) for p in params)
        assert all(t.shape.rank == 0 or t.shape[0] == n for t in tf.nest.flatten(state)), \
            "a coordinate-wise optimizer keeps one state row per coordinate (or a scalar)"
        # two steps; changing coordinate (0, 1)'s gradients changes only its own steps
        # (the other sign: a rule that normalises the gradient's scale, as RNNprop, sees a
        # scaled gradient of the same sign as the same input)
        other = [g + 0.0 for g in grads]
        flipped = -7.0 if float(grads[0][0, 1]) > 0 else 7.0
        other[0] = tf.tensor_scatter_nd_update(other[0], [[0, 1]], [flipped])
        runs = []
        for g in (grads, other):
            s = opt.initial_state(params)
            s1, s = opt.update(g, s, params)
            s2, s = opt.update([2.0 * t for t in g], s, params)
            runs.append([np.concatenate([a.numpy().ravel() for a in s1]),
                         np.concatenate([a.numpy().ravel() for a in s2])])
        for a, b in zip(*runs):
            changed = np.flatnonzero(a != b)
            assert list(changed) in ([], [1]), f"steps of coordinates {changed} changed"
        assert runs[0][1][1] != runs[1][1][1]


def _contract_swarm(name, cls, info):
    family = Rastrigin(n=2, batch_size=3)
    instance = family.sample_instance(0)
    opt = cls(dim=2, particles=3)
    x = tf.random.stateless_normal([3, 3, 2], [1, 2])           # (particles, B, n)
    state = opt.initial_state(x)
    x1, new_state, f = opt.step(family, instance, x, state)
    assert tuple(x1.shape) == tuple(x.shape) and tuple(f.shape) == (3, 3)
    tf.nest.assert_same_structure(state, new_state)
    assert _shapes(new_state) == _shapes(state)
    assert np.all(np.isfinite(x1.numpy())) and np.any(x1.numpy() != x.numpy())
    # instances do not interact: moving instance 2's particles leaves 0 and 1 alone
    moved = x + tf.constant([0.0, 0.0, 1.0])[None, :, None]
    x2, _, _ = opt.step(family, instance, moved, opt.initial_state(moved))
    np.testing.assert_allclose(x2.numpy()[:, :2], x1.numpy()[:, :2], rtol=1e-5, atol=1e-6)


def _contract_twin(name, cls, info):
    problem = minimax.Saddle(batch_size=3)
    instance = problem.sample_instance(0)
    u, v = problem.init_params(1, instance)
    opt = cls()
    state = opt.initial_state([u, v], tf.constant([0, 1]))
    u1, v1, s1 = opt.half_step(problem, instance, u, v, state, tf.constant(0), 10, True)
    np.testing.assert_array_equal(v1.numpy(), v.numpy())
    assert tuple(u1.shape) == tuple(u.shape) and np.any(u1.numpy() != u.numpy())
    assert _shapes(s1) == _shapes(state)
    u2, v2, _ = opt.half_step(problem, instance, u1, v1, s1, tf.constant(1), 10, False)
    np.testing.assert_array_equal(u2.numpy(), u1.numpy())
    assert np.any(v2.numpy() != v1.numpy())


CONTRACTS = {"update": _contract_update, "swarm": _contract_swarm, "twin": _contract_twin}


@pytest.mark.parametrize("name", LEARNED)
def test_learned_optimizer_contract(name, tmp_path):
    info = registry.info("learned", name)
    interface = info.get("interface", "update")
    assert interface in CONTRACTS, f"{name}: no contract for interface {interface!r}"
    cls = registry.get("learned", name)
    CONTRACTS[interface](name, cls, info)
    if interface == "update":   # built as the commands build it
        from model_free.meta.training import build_optimizer
        every, count = cls.original_selection
        assert every >= 1 and count >= 1
        for synthetic in (True, False):
            assert isinstance(build_optimizer(name, synthetic), cls)
        # saved and loaded back through the registry (the loader names no class)
        from model_free.weights import pretrained
        opt = build_optimizer(name, False)
        pretrained.save_optimizer(opt, str(tmp_path / "opt.npz"))
        kind, loaded = pretrained.load_optimizer(str(tmp_path / "opt.npz"), expected=name)
        assert kind == pretrained.kind_of(name) and type(loaded) is cls
        for a, b in zip(loaded.weights, opt.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_registry_says_what_serves_each_command():
    assert registry.interface("model", "lista") == "unrolled"
    assert registry.interface("learned", "l2o_swarm") == "swarm"
    assert registry.commands("model", "step_lista") == ("lasso",)
    assert "step_lista" not in registry.serving("sparse_recovery")
    assert registry.serving("rastrigin", ("learned",), interface="swarm") == ["l2o_swarm"]
    assert registry.in_suite("model", "lista", "lasso", "quick")
    assert not registry.in_suite("model", "tista", "sparse_recovery", "paper")
    # a new entry without suite info runs in both suites of every command it serves
    assert registry.in_suite("model", "lista_copy", "lasso", "paper") is False   # not served
    assert registry.in_suite("model", "lista_copy", "sparse_recovery", "quick")
    with pytest.raises(ValueError, match="interface"):
        registry.register("model", "bad_interface", "a:b", interface="update")
    with pytest.raises(ValueError, match="commands"):
        registry.register("learned", "bad_commands", "a:b", commands=("nowhere",))


def test_every_command_accepts_every_name_it_serves(tmp_path):
    results = tmp_path / "accepted.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "cli_accept.py"),
                           str(tmp_path), str(results), "tests.extra_registry"], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    accepted = json.loads(results.read_text())
    for command in registry.COMMANDS:
        expected = registry.serving(command)
        assert sorted(accepted[command]) == sorted(expected), command
        refused = {n: r for n, r in accepted[command].items() if r != [0, []]}
        assert not refused, f"run.{command} refuses {refused}"
    # the test-only entries are in every command that fits them, with no edit there
    assert "lista_copy" in accepted["sparse_recovery"]
    assert {"dm_with_recipe"} <= set(accepted["lasso"]) & set(accepted["rastrigin"]) \
        & set(accepted["nn_training"])


LOAD_MODELS = """
import importlib, sys, numpy as np, keras
import model_based
folder, names, modules = sys.argv[1], sys.argv[2].split(','), sys.argv[3:]
for module in modules:            # entries registered outside model_based (test-only)
    importlib.import_module(module)
y = np.load(folder + '/y.npy')
out = {}
for name in names:
    model = keras.saving.load_model(f'{folder}/{name}.keras')
    out[name] = model(y)[-1].numpy()
    out[name + '_class'] = np.array(type(model).__name__)
np.savez(folder + '/loaded.npz', **out)
"""


def test_every_unrolled_model_round_trips_in_a_fresh_process(tmp_path):
    """Saved as ``.keras``, every registered model loads after ``import model_based`` (an
    entry outside it after importing its module) with equal outputs; A and W are weights,
    not JSON."""
    import zipfile
    from model_based.factory import build_model
    rng = np.random.default_rng(0)
    A = (rng.normal(size=(12, 24)) / 3.5).astype(np.float32)
    W = (rng.normal(size=(12, 24)) / 3.5).astype(np.float32)
    y = rng.normal(size=(5, 12)).astype(np.float32)
    np.save(tmp_path / "y.npy", y)
    expected, modules = {}, set()
    for name in MODELS:
        model = build_model(name, A, W, 3)
        for v in model.trainable_variables:     # move off the initialisation
            v.assign(v + 0.01 * rng.normal(size=v.shape).astype(np.float32))
        model.save(str(tmp_path / f"{name}.keras"))
        expected[name] = (model(y)[-1].numpy(), type(model).__name__)
        with zipfile.ZipFile(tmp_path / f"{name}.keras") as archive:
            config = json.loads(archive.read("config.json"))["config"]
        assert "A" not in config and "W" not in config and config["m"] == 12
        module = type(model).__module__
        if not module.startswith("model_based."):
            modules.add(module)
    proc = subprocess.run([sys.executable, "-c", LOAD_MODELS, str(tmp_path), ",".join(MODELS),
                           *sorted(modules)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "loaded.npz") as loaded:
        for name in MODELS:
            assert str(loaded[name + "_class"]) == expected[name][1]
            np.testing.assert_array_equal(loaded[name], expected[name][0], err_msg=name)


LOAD_UPDATE_RULES = """
import importlib, sys, numpy as np, tensorflow as tf
import model_free                 # the family registers its classes (the core names none)
from open_l2o_tf import keras_files
folder, names, modules = sys.argv[1], sys.argv[2].split(','), sys.argv[3:]
for module in modules:            # entries registered outside model_free (test-only)
    importlib.import_module(module)
grads = [tf.constant(np.load(folder + '/grads.npy'))]
out = {}
for name in names:
    opt = keras_files.load_model(f'{folder}/{name}.keras')
    steps, _ = opt.update(grads, opt.initial_state(grads))
    out[name + '_shape'] = np.array(steps[0].shape)
    out[name + '_class'] = np.array(type(opt).__name__)
    for i, weight in enumerate(opt.weights):
        out[f'{name}_w{i}'] = weight.numpy()
np.savez(folder + '/loaded.npz', **out)
"""


def test_every_update_rule_round_trips_in_a_fresh_process(tmp_path):
    """Saved as ``.keras``, every learned update rule loads in a fresh process through
    ``open_l2o_tf.keras_files.load_model`` after ``import model_free`` (which imports every
    registered class; an entry outside ``model_free`` after importing its module) with equal weights and steps shaped
    like the parameters (L2O-Scale's steps are random: its fresh offsets)."""
    from model_free.meta.training import build_optimizer
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(3, 4)).astype(np.float32)
    np.save(tmp_path / "grads.npy", grads)
    names = registry.names("learned", interface="update")
    expected, modules = {}, set()
    for name in names:
        opt = build_optimizer(name, True)
        for v in opt.trainable_variables:     # move off the initialisation
            v.assign(v + 0.01 * rng.normal(size=v.shape).astype(np.float32))
        opt.save(str(tmp_path / f"{name}.keras"))
        expected[name] = ([w.numpy() for w in opt.weights], type(opt).__name__)
        module = type(opt).__module__
        if not module.startswith("model_free."):
            modules.add(module)
    proc = subprocess.run([sys.executable, "-c", LOAD_UPDATE_RULES, str(tmp_path),
                           ",".join(names), *sorted(modules)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "loaded.npz") as loaded:
        for name in names:
            assert str(loaded[name + "_class"]) == expected[name][1]
            assert tuple(loaded[name + "_shape"]) == grads.shape, name
            assert sum(bool(re.fullmatch(rf"{name}_w\d+", key)) for key in loaded.files) \
                == len(expected[name][0]), name
            for i, weight in enumerate(expected[name][0]):
                np.testing.assert_array_equal(loaded[f"{name}_w{i}"], weight, err_msg=name)


@pytest.mark.parametrize("name", MODELS)
def test_unrolled_model_resumes_from_its_checkpoint(problem, name, tmp_path):
    """A finished layer's checkpoint, read by a fresh model and trainer in the same
    directory (as a re-run of the command does), gives the same weights without training."""
    from model_based.progressive import ProgressiveTrainer
    A, W, y, x = problem

    def trainer():
        tf.keras.utils.set_random_seed(0)
        model = build(name, A, W)
        lasso = registry.get("model", name).lasso_only
        return model, ProgressiveTrainer(
            model, (y, x), (y, x), task="lasso" if lasso else "sc", lam=0.1 if lasso else None,
            steps_per_epoch=2, batch_size=B, max_epochs=1, patience=1,
            ckpt_dir=str(tmp_path / "ckpt"), progress=None, seed=0, jit_compile=False)

    model, first = trainer()
    first.train(1)
    steps = first.train_steps
    assert steps > 0
    again, second = trainer()
    second.train(1)
    assert second.train_steps == steps
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", registry.names("learned", interface="update"))
def test_learned_optimizer_resumes_from_its_checkpoint(name, tmp_path):
    """Meta-training's checkpoint, read by a fresh call in the same workdir (a re-run of
    the command), gives the same weights and counters without training."""
    import keras
    from model_free.meta import training
    from open_l2o_tf.optimizees.quadratic import Quadratic

    def meta_train():
        keras.utils.set_random_seed(0)
        return training.meta_train_or_load(
            name, Quadratic(dim=3, batch_size=2), synthetic=True, workdir=str(tmp_path),
            episodes=1, unroll=4, truncation=2, seed=0, progress=None,
            selection="horizon_mean", horizons=(4,))

    opt, info = meta_train()
    assert info["train_steps"] > 0
    again, info_again = meta_train()
    assert info_again["train_steps"] == info["train_steps"]
    for a, b in zip(again.weights, opt.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

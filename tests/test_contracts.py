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
import re

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


def test_the_test_only_entry_is_in_the_suite():
    assert "lista_copy" in MODELS and "lista" in MODELS
    assert registry.get("model", "lista_copy") is tests.extra_registry.ListaCopy


def test_registry_mechanism():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("model", "lista", "somewhere:Else")
    registry.register("model", "lista", registry.TABLES["model"]["lista"])   # same: no-op
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
        other = [g + 0.0 for g in grads]
        other[0] = tf.tensor_scatter_nd_update(other[0], [[0, 1]], [7.0])
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
        from model_free.training import build_optimizer
        every, count = cls.original_selection
        assert every >= 1 and count >= 1
        for synthetic in (True, False):
            assert isinstance(build_optimizer(name, synthetic), cls)
        # saved and loaded back through the registry (the loader names no class)
        from model_free import pretrained
        opt = build_optimizer(name, False)
        pretrained.save_optimizer(opt, str(tmp_path / "opt.npz"))
        kind, loaded = pretrained.load_optimizer(str(tmp_path / "opt.npz"), expected=name)
        assert kind == pretrained.kind_of(name) and type(loaded) is cls
        for a, b in zip(loaded.weights, opt.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())

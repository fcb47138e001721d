"""Safe-L2O (open_l2o_tf.safeguard, model_based.safeguard, model_free.rules.safeguard)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from model_based import safeguard as msg
from model_based.factory import build_model
from model_based.lista_cp import ListaCp
from model_free.meta.training import build_optimizer
from model_free.rules import safeguard as fsg
from open_l2o_tf import safeguard as sg
from open_l2o_tf.classic import first_order, ista_fista
from open_l2o_tf.data import sparse_recovery
from open_l2o_tf.errors import UserError
from open_l2o_tf.optimizees.lasso import Lasso
from open_l2o_tf.optimizees.rastrigin import Rastrigin
from tests.cli import error_lines, run_cli, run_ok

M, N, B = 12, 24, 16


@pytest.fixture(scope="module")
def problem():
    A = sparse_recovery.gaussian_matrix(M, N, [3, 0])
    y, x = sparse_recovery.sample_measurements(A, 4, B)
    return A, y.numpy(), x.numpy()


def _random_candidates(op, x, k):
    """A learned step that is sometimes good (ISTA twice), sometimes bad (noise), chosen
    per instance at random."""
    rng = np.random.default_rng(k)
    good = op.T(op.T(x))
    bad = x + rng.normal(0.0, 0.5, x.shape).astype(np.float32)
    pick = tf.constant(rng.random(x.shape[0]) < 0.5)
    return sg.select(pick, good, bad)


@pytest.mark.parametrize("rule", sg.RULES)
@pytest.mark.parametrize("energy,track", [("residual", "all"), ("objective", "accepted")])
def test_energy_never_exceeds_the_rules_bound(problem, rule, energy, track):
    A, y, _ = problem
    op = sg.LassoOperator(A, y, 0.05)
    guard = sg.Safeguard(sg.SafeguardRule(rule, 0.05, track=track), op.energy(energy),
                         sg.ista_fallback(op))
    x = tf.zeros([B, N])
    state = guard.init(x)
    state0_mu = state["rule"]["mu"].numpy()
    saw_accept = saw_reject = False
    for k in range(30):
        bound = guard.rule.bound(state["rule"]).numpy()
        energy_before = state["energy"].numpy()
        mu_before = state["rule"]["mu"].numpy()
        x, state, accepted = guard.step(x, _random_candidates(op, x, k), state)
        acc = accepted.numpy()
        e = state["energy"].numpy()
        # accepted learned steps: E(x_{k+1}) <= (1 - delta) mu_k
        assert np.all(e[acc] <= bound[acc] + 1e-6)
        # rejected: the ISTA step, which does not increase this energy
        assert np.all(e[~acc] <= energy_before[~acc] * (1 + 1e-5) + 1e-6)
        np.testing.assert_allclose(e, guard.energy_fn(x).numpy(), rtol=1e-5, atol=1e-6)
        # where rejected, mu stays (paper) or drops to the classic step's energy (track=all)
        mu = state["rule"]["mu"].numpy()
        want = mu_before if track == "accepted" else np.minimum(mu_before, e)
        np.testing.assert_allclose(mu[~acc], want[~acc], rtol=1e-6)
        # and it never rises (AA: a mean of accepted energies, each below mu_1)
        if rule != "arithmetic":
            assert np.all(mu <= mu_before * (1 + 1e-6))
        else:
            assert np.all(mu <= state0_mu * (1 + 1e-6))
        saw_accept |= acc.any()
        saw_reject |= (~acc).any()
    assert saw_accept and saw_reject


def test_rule_updates():
    e0 = tf.constant([10.0, 10.0])
    acc = tf.constant([True, False])
    e = tf.constant([4.0, 1.0])
    expect = {"ema": 0.5 * 4 + 0.5 * 10, "geometric": 0.8 * 10, "recent": 4.0,
              "arithmetic": 7.0, "recent_max": 10.0}
    params = {"ema": 0.5, "geometric": 0.2, "recent_max": 2}
    for kind, value in expect.items():
        rule = sg.SafeguardRule(kind, 0.1, params.get(kind))
        state = rule.update(rule.init(e0), e, acc)
        np.testing.assert_allclose(state["mu"].numpy(), [value, 10.0], rtol=1e-6)
        assert rule.accept(tf.constant([8.9, 9.1]), rule.init(e0)).numpy().tolist() == \
            [True, False]
    rule = sg.SafeguardRule("recent_max", 0.0, 2)    # the window forgets the oldest value
    state = rule.init(tf.constant([10.0]))
    for value in (4.0, 3.0):
        state = rule.update(state, tf.constant([value]), tf.constant([True]))
    assert float(state["mu"][0]) == 4.0
    assert not rule.accept(tf.constant([np.nan]), state).numpy()[0]
    for kwargs in (dict(kind="nope"), dict(delta=1.0), dict(kind="ema", param=0.0),
                   dict(kind="recent_max", param=1.5)):
        with pytest.raises(UserError):
            sg.SafeguardRule(**kwargs)
    assert [sg.check_shadow(v) for v in (True, False, "strict")] == ["best", "off", "strict"]
    with pytest.raises(UserError):
        sg.check_shadow("sometimes")


def _overshooting_model(A, T=3):
    """LISTA-CP whose steps are 30x too long: the plain model diverges."""
    model = build_model("lista_cp", A, None, T, faithful_init=False)
    for var in model.trainable_variables:
        if var.name.startswith("W"):
            var.assign(var * 30.0)
    return model


class _Shifting(ListaCp):
    """A learned step that is always bad: every coordinate moves by +3."""

    def layer(self, t, y, x, state):
        return x + 3.0, state


@pytest.mark.parametrize("fallback", ["ista", "fista"])
def test_bad_learned_step_converges_as_the_classic_solver(problem, fallback):
    A, y, x = problem
    kw = dict(A=A, lam=0.05, x_true=x, fallback=fallback, energy="residual")
    # always bad: every step rejected, the iterates are ISTA's / FISTA's own
    model = _Shifting(A, 3)
    safe = msg.run(model, y, 40, mode="on", **kw)
    assert safe["rejected"][1:].min() == B
    _, ref = (ista_fista.ista if fallback == "ista" else ista_fista.fista)(A, y, 0.05, 40)
    np.testing.assert_allclose(safe["objective"], ref.numpy(), rtol=2e-4, atol=1e-6)
    if fallback == "ista":
        return
    # mostly bad (30x overshoot, now and then accepted): the plain model diverges, the
    # safeguarded one converges to the Lasso solution as FISTA does
    model = _overshooting_model(A)
    plain = msg.run(model, y, 200, mode="off", **kw)
    safe = msg.run(model, y, 200, mode="on", **kw)
    assert not np.all(np.isfinite(plain["objective"][-1])) or \
        plain["objective"][-1].mean() > 1e3 * ref.numpy()[0].mean()
    assert B / 2 < safe["rejected"][1:].mean() < B
    f_star = ista_fista.lasso_fstar(A, y, 0.05).numpy()
    assert (safe["objective"][-1].mean() - f_star.mean()) < 1e-4 * f_star.mean()
    assert safe["energy"][-1].max() < 1e-3 * safe["energy"][0].max()


class _GoodThenStalling(ListaCp):
    """A learned step that is good early and plausible-looking later: two ISTA steps on the
    Lasso, shrunk by 0.95.  Far from the solution it beats FISTA; nearer, it still lowers
    the energy enough to pass the rule while FISTA overtakes it, and it stalls short of
    the solution."""

    def __init__(self, A, num_layers, lam, **kwargs):
        super().__init__(A, num_layers, **kwargs)
        self.op_A, self.op_lam = np.asarray(A, np.float32), lam

    def layer(self, t, y, x, state):
        op = sg.LassoOperator(self.op_A, y, self.op_lam)
        return 0.95 * op.T(op.T(x)), state


@pytest.mark.parametrize("energy", ["residual", "objective"])
def test_shadow_keeps_the_energy_at_or_below_fistas_at_equal_iterations(problem, energy):
    A, y, x = problem
    model = _GoodThenStalling(A, 3, 0.05)
    kw = dict(A=A, lam=0.05, x_true=x, energy=energy, rule=sg.SafeguardRule("ema", 0.01))
    fista = msg.run(model, y, 60, mode="classic", **kw)["energy"]
    excess = {}
    for shadow in ("off", "best", "strict"):
        out = msg.run(model, y, 60, mode="on", shadow=shadow, **kw)
        acc = out["accepted"][1:]
        assert acc[:5].mean() > 0.4 and (~acc).any()    # good early, rejected later
        if energy == "objective":    # the reported energy is the reported iterate's
            np.testing.assert_allclose(out["energy"], out["objective"], rtol=1e-5)
        excess[shadow] = (out["energy"] - fista * (1 + 1e-5) - 1e-7).max(axis=0)
    # Heaton et al.'s test alone lets the stalling steps in: behind FISTA (most instances)
    assert (excess["off"] > 0.0).mean() > 0.5
    # with the shadow, never, per instance and iteration
    assert np.all(excess["best"] <= 0.0) and np.all(excess["strict"] <= 0.0)


def test_shadow_with_a_transform_fallback():
    """Rastrigin, an untrained learned optimizer, Adam as the fallback: the objective of the
    safeguarded run is never above Adam's own run at equal iterations, per instance."""
    fam = Rastrigin(n=2, batch_size=128)
    inst = fam.sample_instance(7, 6)
    x0 = fam.init_params(6, inst)
    out = {}
    for mode in ("on", "classic"):
        guard = fsg.objective_safeguard(fam, inst, sg.SafeguardRule("ema", 0.01),
                                        first_order.adam(0.1),
                                        energy_offset=fam.lower_bound(inst), mode=mode)
        out[mode] = fsg.evaluate(build_optimizer("l2o_dm", True), fam, 30, inst, x0, guard,
                                 grad_scale=1 / 128)
    assert np.all(out["on"]["energy"] <= out["classic"]["energy"] * (1 + 1e-5) + 1e-5)
    assert out["on"]["accepted"][1:].any()


def test_instances_decide_independently(problem):
    A, y, x = problem
    model = build_model("lista_cpss", A, None, 2)    # untrained: a mixed bag of steps
    kw = dict(A=A, lam=0.05, x_true=x, mode="on")
    batch = msg.run(model, y, 12, **kw)
    acc = batch["accepted"][1:]
    assert (acc.any(axis=1) & ~acc.all(axis=1)).any()   # some iteration splits the batch
    for i in (0, 11):
        alone = msg.run(model, y[i:i + 1], 12, **dict(kw, x_true=x[i:i + 1]))
        np.testing.assert_array_equal(alone["accepted"][:, 0], batch["accepted"][:, i])
        np.testing.assert_allclose(alone["nmse_db"][:, 0], batch["nmse_db"][:, i],
                                   rtol=1e-4, atol=1e-3)


def test_runs_past_the_trained_depth_by_repeating_the_last_layer(problem):
    A, y, x = problem
    T = 3
    model = build_model("alista", A, A, T)
    out = msg.run(model, y, 5, A=A, lam=0.05, x_true=x, mode="off")
    layers = model(y, num_layers=T)
    xs = list(layers)
    x_k = layers[-1]
    for _ in range(2):
        x_k, _ = model.layer(T - 1, tf.constant(y), x_k, ())
        xs.append(x_k)
    want = np.stack([0.5 * np.sum(y ** 2, -1)] + [(0.5 * np.sum((xk.numpy() @ A.T - y) ** 2, -1)
                                      + 0.05 * np.abs(xk.numpy()).sum(-1)) for xk in xs])
    np.testing.assert_allclose(out["objective"], want, rtol=1e-4, atol=1e-5)
    assert out["rejected"].sum() == 0


class _ShiftingOptimizer:
    """A 'learned' rule that is always bad: every coordinate moves by +3."""

    def initial_state(self, params):
        return ()

    def update(self, grads, state, params=None):
        return [3.0 + 0.0 * g for g in grads], state


def test_learned_update_rule_safeguard():
    A = sparse_recovery.gaussian_matrix(5, 10, [1, 0])
    y = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    family = Lasso.from_data(A, y, lam=0.05, batch_size=8)
    inst, x0 = {"y": tf.constant(y)}, [tf.zeros([8, 10])]
    rule = sg.SafeguardRule()
    outs = {mode: fsg.evaluate(_ShiftingOptimizer(), family, 40, inst, x0,
                               fsg.lasso_safeguard(family, inst, rule, mode=mode),
                               grad_scale=1 / 128) for mode in ("off", "on", "classic")}
    last = outs["off"]["loss"][-1]
    assert not np.all(np.isfinite(last)) or last.mean() > 10 * outs["off"]["loss"][0].mean()
    assert outs["on"]["rejected"][1:].min() == 8
    np.testing.assert_allclose(outs["on"]["loss"], outs["classic"]["loss"], rtol=1e-5)
    # a real (untrained) learned optimizer on Rastrigin: the accepted steps obey the bound
    fam = Rastrigin(n=2, batch_size=128)
    inst = fam.sample_instance(5, 6)
    x0 = fam.init_params(6, inst)
    guard = fsg.objective_safeguard(fam, inst, sg.SafeguardRule("recent", 0.05),
                                    first_order.adam(0.1), energy_offset=fam.lower_bound(inst),
                                    shadow="off")    # energies of the iterates themselves
    out = fsg.evaluate(build_optimizer("l2o_dm", True), fam, 20, inst, x0, guard,
                       grad_scale=1 / 128)
    assert np.all(out["energy"] >= -1e-4)
    for k in range(1, 21):
        acc = out["accepted"][k]
        # recent-term rule: every accepted energy is below (1 - delta) x the last accepted one
        prev = np.array([out["energy"][:k][out["accepted"][:k][:, i], i][-1]
                         for i in range(6)])
        assert np.all(out["energy"][k][acc] <= 0.95 * prev[acc] + 1e-5)


def test_cli_sparse_recovery_safeguard(tmp_path, problem):
    A, _, _ = problem
    data = tmp_path / "data"     # a small data directory in run.make_data's layout
    data.mkdir()
    rng = np.random.default_rng(0)
    np.save(data / "A.npy", A)
    for split, num in (("train", 64), ("val", 32), ("test", 64)):
        x = ((rng.random((num, N)) < 0.1) * rng.standard_normal((num, N))).astype(np.float32)
        np.save(data / f"{split}_data.npy", np.concatenate([x @ A.T, x], axis=1))
    (data / "meta.json").write_text(json.dumps({"setting": "noiseless", "m": M, "n": N,
                                                "lam": None}))
    model = build_model("lista_cpss", A, None, 2)
    model.save(str(tmp_path / "m.keras"))
    record = run_ok("run.sparse_recovery", "--model=lista_cpss", f"--data_dir={data}",
                    "--num_layers=2", f"--load={tmp_path / 'm.keras'}", "--safeguard=on",
                    "--safeguard_iterations=7", "--safeguard_rule=geometric",
                    workdir=tmp_path / "w")
    s = record["safeguard"]
    assert s["rule"] == "geometric" and s["iterations"] == 7
    assert set(s["curves"]) == {"learned", "safeguarded", "fista"}
    assert len(s["rejected"]) == 8 and all(len(c) == 8 for c in s["curves"].values())
    assert os.path.getsize(tmp_path / "w" / "safeguard.png") > 1000
    proc = run_cli("run.sparse_recovery", "--model=lista_cpss", f"--data_dir={data}",
                   f"--load={tmp_path / 'm.keras'}", "--safeguard=on",
                   "--safeguard_fallback=adam", f"--workdir={tmp_path / 'w2'}")
    assert proc.returncode == 2
    assert error_lines(proc) == ["error: --safeguard_fallback must be one of ista, fista "
                                 "here, got adam"]
    proc = run_cli("run.lasso", "--optimizer=fista", "--safeguard=on",
                   f"--workdir={tmp_path / 'w3'}")
    assert proc.returncode == 2 and error_lines(proc)[0].startswith("error: --safeguard=on")


def test_cli_ood(tmp_path):
    A = sparse_recovery.gaussian_matrix(16, 32, [5, 0])
    model = build_model("lista_cpss", A, None, 2)
    model.save(str(tmp_path / "m.keras"))
    record = run_ok("run.ood", f"--load={tmp_path / 'm.keras'}",
                    "--shifts=in_distribution,gaussian_A,noisy", "--iterations=6",
                    "--num_test=32", "--safeguard_track=accepted", workdir=tmp_path / "w")
    assert record["test"] == "safeguard_ood"
    assert set(record["shifts"]) == {"in_distribution", "gaussian_A", "noisy"}
    for shift in record["shifts"].values():
        assert shift["track"] == "accepted" and len(shift["rejected"]) == 7
        assert set(shift["checks"]) >= {"targets", "iterations_plain_worse_than_classic"}
        assert len(shift["curves"]["safeguarded"]) == 7
    assert os.path.exists(tmp_path / "w" / "ood_gaussian_A.png")
    proc = run_cli("run.ood", f"--load={tmp_path / 'm.keras'}", "--shifts=upside_down",
                   f"--workdir={tmp_path / 'w2'}")
    assert proc.returncode == 2
    assert error_lines(proc)[0].startswith("error: --shifts: unknown shift 'upside_down'")

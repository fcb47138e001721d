"""Model selection: the one-call scoring of all held-out instances gives the scores of the
per-instance loop it replaced (to float32 round-off)."""
import numpy as np
import pytest
import tensorflow as tf

from model_free.meta.evaluation import batch_count, make_runner, stateless_seed
from model_free.meta.recipe import MetaRecipe
from model_free.meta.selection import ModelSelection
from model_free.rules.dm import L2ODM
from model_free.rules.rnnprop import L2ORNNprop
from open_l2o_tf.optimizees.lasso import Lasso
from open_l2o_tf.optimizees.networks import MnistMLP


def _loop_score(opt, optimizee, recipe, horizon):
    """The previous implementation: one runner call and one ``.numpy()`` per instance."""
    scores, runner = [], None
    for i in range(recipe.eval_instances):
        seed = stateless_seed(10 ** 6 + recipe.seed, i)
        instance = optimizee.sample_instance(seed)
        params = list(optimizee.init_params(seed + [0, 1], instance))
        if runner is None:
            scale = 1.0 / batch_count(optimizee, params, instance, 10 ** 6 + i)
            runner = make_runner(opt, optimizee, horizon, scale, jit_compile=False,
                                 seeded_state=True)
        curve = runner(params, instance, tf.constant(10 ** 6 + i, tf.int32),
                       stateless_seed(10 ** 6 + i, 0)).numpy()
        if recipe.selection == "last_truncation":
            tail = curve[-(min(recipe.truncation, horizon) + 1):]
            scores.append(float(np.mean(np.sum(tail, axis=0))))
        else:
            scores.append(float(np.mean(curve)))
    return np.mean(scores)


@pytest.mark.parametrize("selection", ["last_truncation", "horizon_mean"])
def test_one_call_selection_scores_as_the_per_instance_loop(selection):
    rng = np.random.default_rng(0)
    lasso = Lasso.from_data(rng.normal(size=(5, 8)).astype(np.float32),
                            rng.normal(size=(40, 5)).astype(np.float32), batch_size=4)
    mlp = MnistMLP(rng.random((64, 6, 6, 1), np.float32),
                   rng.integers(0, 10, 64).astype(np.int32), "sigmoid", batch_size=8)
    for opt, problem in ((L2ORNNprop(), lasso), (L2ODM(), mlp)):
        recipe = MetaRecipe(truncation=4, eval_instances=3, selection=selection, seed=3)
        chosen = ModelSelection(opt, problem, recipe)
        new, old = chosen.score(12), _loop_score(opt, problem, recipe, 12)
        assert np.isfinite(new) and new == pytest.approx(old, rel=1e-6, abs=0)
        assert chosen.score(12) == new          # the cached call scores the same again
        assert chosen.score(8, instances=2) != new


def test_original_selection_scores_f_at_the_horizon_on_fresh_problems():
    """The original's rule (train_dm.py: 20 problems drawn afresh at every evaluation,
    scored by fx_final = f(x_H)): the score is the mean over the draw's problems of the loss
    at the end of the horizon, and each evaluation (episode) has its own problems."""
    from model_free.meta.training import default_selection, selection_settings
    rng = np.random.default_rng(0)
    lasso = Lasso.from_data(rng.normal(size=(5, 8)).astype(np.float32),
                            rng.normal(size=(40, 5)).astype(np.float32), batch_size=4)
    opt = L2ORNNprop()
    recipe = MetaRecipe(truncation=4, eval_instances=3, selection="original", seed=3)
    chosen = ModelSelection(opt, lasso, recipe)
    score = chosen.score(12, draw=5)
    params, instances, seeds, seeds0 = chosen.held_out(3, draw=5)
    runner = make_runner(opt, lasso, 12, chosen._scale, jit_compile=False,  # pylint: disable=protected-access
                         seeded_state=True)
    finals = [runner([p[i] for p in params], tf.nest.map_structure(lambda t: t[i], instances),
                     seeds[i], seeds0[i]).numpy()[-1].mean() for i in range(3)]
    assert score == pytest.approx(np.mean(finals), rel=1e-6)
    assert chosen.score(12, draw=5) == score                       # a resumed run: the same
    assert chosen.score(12, draw=6) != score                       # the next evaluation: new
    problems = lambda held: tf.nest.flatten(held[1])[0].numpy()  # noqa: E731
    assert not np.allclose(problems(chosen.held_out(3)), problems((params, instances)))
    assert not np.allclose(problems(chosen.held_out(3, draw=6)), problems((params, instances)))
    chosen.selection = "last_truncation"      # the previous rule: about T + 1 times larger
    assert chosen.score(12) > 3 * ModelSelection(opt, lasso, recipe).score(12, draw=0)
    assert default_selection("paper") == "original" and default_selection("quick") == \
        "horizon_mean"
    assert selection_settings("l2o_dm", "original", 10000) == dict(
        selection="original", eval_every=100, eval_instances=20)

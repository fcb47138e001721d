"""Learned optimizers on Lasso (Fig. 6), shared by ``run.lasso``.

The optimizer is meta-trained on Lasso instances built from the data set's training split
(the same A and the same generator as the model-based runs; spec model_free §9.2), batch
128, for the paper preset's budget (:mod:`open_l2o_tf.budgets`: 100 episodes of 1,000
steps, the paper's "100 epochs and 1,000 iterations per epoch"; runs resume), and then run
for ``iterations`` steps on the test problems with the gradient of the mean over 128
instances (the scale it was trained with).

``train_instances="fixed"`` meta-trains as the original's ``problems.lasso_fixed``
(Model_Free_L2O/L2O-DM and L2O-RNNProp/problems.py:137-175) would on this data: one fixed
batch, the first 128 training instances, in every episode, with ``x_0 ~ N(0, 0.01^2)`` (its
``tf.random_normal_initializer(stddev=0.01)``); ``"fresh"`` (the default) draws 128 instances
of the training split per episode from ``x_0 = 0``.  The test run is the same either way.
"""
from model_free.meta import meta_trainer, training
from open_l2o_tf import budgets
from open_l2o_tf.data import sparse_recovery
from open_l2o_tf.optimizees.lasso import Lasso


def train_and_run(name, data_dir, A, y, lam, iterations, *, workdir, preset, seed=0,
                  load=None, meta_episodes=None, tb=None, progress=print, selection=None,
                  safeguard=None, strategy=None, unroll=None, meta_lr=None,
                  deterministic=None, train_instances="fresh", lstm_init="sonnet"):
    """Returns ``(curve (iterations + 1, B) of objective values, info)``.

    ``safeguard``: optional ``dict(rule=SafeguardRule, energy=..., fallback=ista|fista)``;
    then ``info["safeguard"]`` holds :func:`model_free.rules.safeguard.compare` on the test
    problems (plain, safeguarded and the classic fallback, mean objective per step)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    train = sparse_recovery.load(data_dir, "train")
    if train_instances not in ("fresh", "fixed"):
        raise ValueError(f"train_instances must be 'fresh' or 'fixed', got {train_instances!r}")
    family = (Lasso.from_data(train.A, train.y, lam=lam, batch_size=128)
              if train_instances == "fresh" else
              Lasso.from_data(train.A, train.y[:128], lam=lam, batch_size=128,
                              init_scale=0.01, fixed=True))
    budget = None if preset == "quick" else budgets.paper_budget("lasso", name)
    episodes = meta_episodes or (budget.episodes if budget else 40)
    selection = selection or training.default_selection(preset)
    opt, info = training.meta_train_or_load(
        name, family, synthetic=True, workdir=workdir, episodes=episodes,
        unroll=unroll or (budget.unroll if budget else 100), load=load, tb=tb,
        seed=seed, progress=progress, horizons=(100, 200) if preset == "quick" else None,
        selection=selection, strategy=strategy, budget=budget,
        meta_lr=meta_lr or (budget.meta_lr if budget else None),
        deterministic=deterministic, original_problem="lasso", lstm_init=lstm_init)
    test = {"y": tf.constant(y)}
    x0 = [tf.zeros([y.shape[0], A.shape[1]])]
    curve = meta_trainer.evaluate(opt, family, iterations, test, x0, seed=seed,
                                  grad_scale=1.0 / 128, tb=tb)
    if safeguard:
        from model_free.rules import safeguard as fsg  # pylint: disable=import-outside-toplevel
        test_family = Lasso.from_data(A, y, lam=lam, batch_size=len(y))

        def make_guard(mode):
            return fsg.lasso_safeguard(test_family, test, safeguard["rule"],
                                       energy=safeguard["energy"],
                                       fallback=safeguard["fallback"], mode=mode,
                                       shadow=safeguard.get("shadow", "best"))
        result = fsg.compare(opt, test_family, iterations, test, x0, make_guard,
                             classic_label=safeguard["fallback"], grad_scale=1.0 / 128)
        info = dict(info, safeguard=dict(result, energy=safeguard["energy"], lam=float(lam),
                                         shadow=safeguard.get("shadow", "best")))
    return curve, info

"""Meta-train-or-load of a learned optimizer, shared by the command lines.

Nothing here names an optimizer: the registered name gives the class
(:func:`optimizer_class`), the class builds it for the problem (``for_problem``) and says
how it is meta-trained (``meta_training``, the recipe: :func:`meta_training_recipe`).
``l2o_dm`` and ``l2o_rnnprop`` use the default recipe (Adam on the sum of losses);
``l2o_scale``'s is the original's ``metaopt.py``
(:meth:`model_free.rules.scale.L2OScale.meta_training`: log-ratio objective, TF1 RMSProp at
1e-6, clipping, state carried across episodes);
``l2o_enhanced`` is the L2O-DM class trained with the curriculum and imitation of Adam, a
recipe its registry entry names (:func:`model_free.rules.dm.enhanced_meta_training`).

Model selection (``selection``): ``"original"``, the original's (``train_dm.py``: every 100
episodes for DM and L2O-enhanced, ``train_rnnprop.py``: every 10 for RNNprop, on 20 problems
drawn afresh at each evaluation, scoring the loss at the end of the horizon ``f(x_H)``; the
paper preset), ``"last_truncation"`` (the same period and count on 20 fixed problems, scoring
the sum of the last truncation's losses; the paper preset's before ``"original"``), or
``"horizon_mean"`` (every <= 10 episodes on 2 problems, the mean loss over the horizon; the
quick preset); :mod:`model_free.meta.selection`.  RNNprop's output is scaled by 0.01 on every
problem as the original.
"""
import importlib
import inspect
import os
import time

from model_free.meta.meta_trainer import MetaTrainer
from model_free.meta.recipe import SELECTIONS, MetaRecipe
from model_free.rules.initial_draw import INITIAL_DRAW_OPTIONS
from model_free.weights import pretrained
from open_l2o_tf import registry
from open_l2o_tf.errors import UserError


def default_selection(preset):
    """The model selection a command uses without ``--model_selection``: the original's
    (``"original"``) with the paper preset, ``"horizon_mean"`` with the quick one."""
    return "horizon_mean" if preset == "quick" else "original"


def selection_settings(name, selection, episodes, budget=None):
    """The :class:`model_free.meta.recipe.MetaRecipe` fields of a model-selection protocol;
    ``budget`` (:class:`open_l2o_tf.budgets.Budget`) sets the original protocol's period and count."""
    if selection in ("original", "last_truncation"):
        every, count = optimizer_class(name).original_selection
        if budget is not None:
            every, count = budget.eval_every or every, budget.eval_instances
        return dict(selection=selection, eval_every=max(1, min(every, episodes)),
                    eval_instances=count)
    if selection == "horizon_mean":
        return dict(selection=selection, eval_every=max(1, min(10, episodes // 5)),
                    eval_instances=2)
    raise UserError(f"model selection must be one of {SELECTIONS}, got {selection!r}")


def optimizer_class(name):
    """The class registered as learned optimizer ``name`` with the ``update`` interface
    (the ones the ``MetaTrainer`` trains); :class:`UserError` for any other name."""
    allowed = registry.names("learned", interface="update")
    if name not in allowed:
        raise UserError(f"unknown learned optimizer {name!r}; expected one of {allowed}")
    return registry.get("learned", name)


LSTM_INITS = ("sonnet", "tied")


def lstm_init_options(name, cls, lstm_init):
    """The constructor options of ``--lstm_init`` (``"sonnet"``: none, the default draw, the
    original's; ``"tied"``: every option of :data:`model_free.rules.base.INITIAL_DRAW_OPTIONS`
    that ``cls`` takes, set True: the initial draw before the shared-initializer fixes, in
    which one unseeded Keras 3 initializer gave several weights the same values: the LSTMs'
    (:class:`model_free.rules.base.SonnetLSTM`), L2O-Swarm's attention weights
    (:class:`model_free.rules.swarm.L2OSwarm`), L2O-Scale's initial states and readouts
    (:class:`model_free.rules.scale.L2OScale`)); :class:`UserError` for ``"tied"`` on an
    optimizer without any."""
    if lstm_init not in LSTM_INITS:
        raise UserError(f"--lstm_init must be one of {LSTM_INITS}, got {lstm_init!r}")
    if lstm_init == "sonnet":
        return {}
    taken = inspect.signature(cls.__init__).parameters
    options = {option: True for option in INITIAL_DRAW_OPTIONS if option in taken}
    if not options:
        raise UserError(f"--lstm_init=tied applies to the learned optimizers with a former "
                        f"tied initial draw (L2O-DM, L2O-RNNprop, L2O-enhanced, L2O-Scale, "
                        f"L2O-Swarm), not {name}")
    return options


def build_optimizer(name, synthetic, lstm_init="sonnet"):
    """The registered optimizer ``name`` as its class builds it for the problem
    (:meth:`model_free.rules.base.LearnedOptimizer.for_problem`); ``lstm_init``: see
    :func:`lstm_init_options`."""
    cls = optimizer_class(name)
    options = lstm_init_options(name, cls, lstm_init)
    build = getattr(cls, "for_problem", None)
    return build(synthetic, **options) if build is not None else cls(**options)


def meta_training_recipe(name):
    """The meta-training recipe of the registered optimizer ``name``: the ``meta_training``
    of its registry entry (a callable or ``"module:function"``; a name that trains a shared
    class its own way, as ``l2o_enhanced``) else its class's
    (:meth:`model_free.rules.base.LearnedOptimizer.meta_training`)."""
    recipe = registry.info("learned", name).get("meta_training")
    if isinstance(recipe, str):
        module_name, attribute = recipe.split(":")
        recipe = getattr(importlib.import_module(module_name), attribute)
    return recipe if recipe is not None else optimizer_class(name).meta_training


def meta_train_or_load(name, optimizee, *, synthetic, workdir, episodes, unroll=100,
                       truncation=20, load=None, tb=None, seed=0, progress=print,
                       horizons=None, random_scale=None, meta_lr=None,
                       selection="original", strategy=None, budget=None,
                       deterministic=None, original_problem=None, lstm_init="sonnet"):
    """Returns ``(optimizer, info)`` with ``train_seconds`` and ``train_steps``; the
    optimizer's recipe (its class's ``meta_training``, with ``meta_lr``) plus this run's
    settings (:class:`model_free.meta.recipe.MetaRecipe`); ``strategy``: a ``tf.distribute``
    strategy or None, ``deterministic``: Grappler off (None: the device's default); ``budget``: the paper preset's
    :class:`open_l2o_tf.budgets.Budget` (model-selection period and count; ``episodes``,
    ``unroll`` and ``meta_lr`` are passed by the caller); ``original_problem``: the
    original's ``util.get_config`` problem of this command (default ``rastrigin`` when
    ``synthetic`` else ``mnist``), whose output scale a loaded original file gets
    (:func:`model_free.weights.pretrained.load_optimizer`); ``lstm_init``: the LSTMs' initial draw
    (:func:`lstm_init_options`, ``--lstm_init``)."""
    if load:
        if lstm_init != "sonnet":
            raise UserError("--lstm_init applies to meta-training, not --load (the file holds "
                            "the weights)")
        loaded_name, opt = pretrained.load_optimizer(
            load, expected=name, synthetic=synthetic,
            problem=original_problem or ("rastrigin" if synthetic else "mnist"))
        progress(f"[meta] loaded {loaded_name} from {load}")
        return opt, {"train_seconds": 0.0, "train_steps": 0, "loaded": load}
    opt = build_optimizer(name, synthetic, lstm_init)
    recipe = MetaRecipe.of(meta_training_recipe(name)(opt, seed=seed, horizons=horizons,
                                                      meta_lr=meta_lr))
    recipe = recipe.replace(unroll=unroll, truncation=truncation, seed=seed,
                            random_scale=random_scale, deterministic=deterministic,
                            **selection_settings(name, selection, episodes, budget))
    trainer = MetaTrainer(opt, optimizee, recipe, ckpt_dir=os.path.join(workdir, "ckpt"),
                          tb=tb, progress=progress, strategy=strategy)
    start = time.time()
    trainer.train(episodes)
    return opt, {"train_seconds": trainer.train_seconds or time.time() - start,
                 "train_steps": trainer.truncations * truncation,
                 "skipped_updates": len(trainer.history["skipped"]),
                 "best_heldout": trainer.best_score, "meta_episodes": trainer.episode,
                 "model_selection": selection, "meta_unroll": unroll}


SUMMARY_KEYS = ("meta_episodes", "meta_unroll", "model_selection", "best_heldout",
                "skipped_updates", "loaded")


def summary(info):
    """The meta-training facts of :func:`meta_train_or_load`'s ``info`` that a
    ``results.json`` records (``meta_training``: the budget actually run)."""
    return {key: info[key] for key in SUMMARY_KEYS if key in info}

"""Model-free L2O: learned update rules and the truncated-BPTT meta-trainer.

The folders::

    model_free/
      __init__.py         the registry entries below (imports no TensorFlow)
      keras_optimizer.py  a trained rule as a keras Optimizer: model.compile / model.fit
      rules/              the learned update rules, one module per optimizer, and their
                          interface (rules/base.py: LearnedOptimizer)
      meta/               meta-training (the outer loop): training.py (meta-train-or-load
                          by name), recipe.py, meta_trainer.py + episodic, truncation,
                          evaluation, selection, carry, checkpoint; curriculum, imitation
      weights/            trained rules in files: our .npz, the original's releases
      measure/            speed of the rules and of meta-training (run.perf)

The interfaces between them are small: ``meta`` drives a rule through
:class:`model_free.rules.base.LearnedOptimizer` (found by registered name) and trains it as
the rule's ``meta_training`` recipe (:class:`model_free.meta.recipe.MetaRecipe`) says;
``weights`` names a rule by its registered name, never by module; ``measure`` only reads.

Importing the package registers its learned optimizers (``open_l2o_tf.registry``, kind
``"learned"``).  The info says which interface the contract tests check
(``tests/test_contracts.py``): ``"update"`` (``initial_state(params)`` /
``update(grads, state)``, :class:`model_free.rules.base.LearnedOptimizer`), ``"swarm"``
(``initial_state(x)`` / ``step``, a population per instance) or ``"twin"`` (two players,
``half_step``); ``coordinatewise=True`` claims that a coordinate's step depends on that
coordinate's gradients only.  A name that trains a shared class its own way names its
meta-training recipe (``meta_training="module:function"``, else the class's
``meta_training`` is used, :func:`model_free.meta.training.meta_training_recipe`);
``curriculum=True``: the recipe sets its own unroll horizons (``--unroll`` does not apply).
``commands`` (default by interface: ``update`` serves ``run.lasso``, ``run.rastrigin`` and
``run.nn_training``, ``swarm`` ``run.rastrigin``, ``twin`` ``run.minimax``) and
``paper`` / ``quick`` (the benchmark suites that run it) are read by the commands
(:mod:`open_l2o_tf.registry`).  A new learned optimizer is one module in ``rules/`` plus
one line here.  After ``import model_free``, a ``.keras`` file of any learned optimizer (or
of a model compiled with :class:`model_free.keras_optimizer.LearnedKerasOptimizer`) loads
with plain ``keras.saving.load_model``: the classes are imported when Keras is.
"""
from open_l2o_tf import registry as _registry

for _name, _target, _info in (
        ("l2o_dm", "model_free.rules.dm:L2ODM",
         dict(interface="update", coordinatewise=True, quick=("rastrigin", "nn_training"))),
        ("l2o_rnnprop", "model_free.rules.rnnprop:L2ORNNprop",
         dict(interface="update", coordinatewise=True, quick=("lasso",))),
        # L2O-enhanced = the L2O-DM network trained with curriculum + imitation.
        ("l2o_enhanced", "model_free.rules.dm:L2ODM", dict(
            interface="update", coordinatewise=True, curriculum=True, quick=(),
            meta_training="model_free.rules.dm:enhanced_meta_training")),
        # hierarchical: tensor- and problem-level GRUs read means over coordinates
        ("l2o_scale", "model_free.rules.scale:L2OScale", dict(
            interface="update", coordinatewise=False, commands=("rastrigin", "nn_training"),
            quick=("rastrigin",))),
        ("l2o_swarm", "model_free.rules.swarm:L2OSwarm", dict(interface="swarm")),
        # Twin-L2O: a pair of learned optimizers for minimax problems (run.minimax).
        ("twin_l2o", "model_free.rules.twin:TwinL2O", dict(interface="twin")),
):
    _registry.register("learned", _name, _target, **_info)

# each learned class becomes known to Keras's serialization once Keras is imported (this
# package imports no TensorFlow), so a saved .keras file loads with keras.saving.load_model
_registry.keras_serializable("learned", modules=("model_free.keras_optimizer",))

"""Meta-training of the learned rules (the outer loop), whichever rule it trains.

* :mod:`.training`: meta-train-or-load by registered name, the entry of the command lines
  (:mod:`.lasso_training`: the same for Fig. 6's Lasso runs);
* :mod:`.recipe`: :class:`~model_free.meta.recipe.MetaRecipe`, every setting of a run;
* :mod:`.meta_trainer`: truncated BPTT of the ``update`` rules, on top of :mod:`.episodic`
  (the episode loop: evaluation, best weights, resume), :mod:`.truncation` (the compiled
  truncation, one device or sharded), :mod:`.evaluation` (a rule's loss curve on problems),
  :mod:`.selection` (model selection on held-out problems), :mod:`.carry` (state carried
  across episodes) and :mod:`.checkpoint` (the atomic ``.npz`` checkpoint);
* :mod:`.curriculum` and :mod:`.imitation`: L2O-enhanced's training techniques.

Towards the other folders: a rule is driven through
:class:`model_free.rules.base.LearnedOptimizer` only, found by its registered name
(:func:`model_free.meta.training.optimizer_class`), and trained as its ``meta_training``
recipe says; the trained weights are written and read by :mod:`model_free.weights.pretrained`.
"""

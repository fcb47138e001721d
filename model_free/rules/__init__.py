"""The learned update rules (model-free L2O, paper Section 4): one module per optimizer.

* :mod:`.base`: the interface every coordinate-wise rule implements,
  :class:`~model_free.rules.base.LearnedOptimizer` (``initial_state(params)`` /
  ``update(grads, state)``), and the Sonnet-1 LSTM cell they share;
* :mod:`.dm` (L2O-DM and L2O-enhanced), :mod:`.rnnprop` (L2O-RNNprop), :mod:`.scale`
  (L2O-Scale), :mod:`.swarm` (L2O-Swarm, a population per instance) and :mod:`.twin`
  (Twin-L2O, two players of a minimax problem);
* what only the rules use: :mod:`.features` (gradient preprocessing), :mod:`.initial_draw`
  (the ``--lstm_init`` draws of the initial weights) and :mod:`.safeguard` (Safe-L2O: a rule
  with a classic fallback).

Towards the other folders: a rule says how it is meta-trained by returning a
:class:`model_free.meta.recipe.MetaRecipe` from its ``meta_training`` (L2O-enhanced's adds
:mod:`model_free.meta.curriculum` and :mod:`model_free.meta.imitation`); the rules that run
their own inner loop (L2O-Swarm, Twin-L2O) subclass
:class:`model_free.meta.episodic.EpisodicTrainer`.  Nothing is imported here: the modules
are found through the registry (``model_free/__init__.py``).
"""

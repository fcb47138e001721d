"""Speed of the learned rules and of their meta-training (``run.perf --what=model_free``).

* :mod:`.perf`: one compiled step of every ``update`` rule against Adam on the MNIST MLP,
  one meta-training truncation, and a rule inside ``model.fit``;
* :mod:`.perf_meta`: meta-training against its floors (Lasso, MNIST MLP with L2O-DM and
  L2O-Scale).

Only measures: it uses :mod:`model_free.rules`, :mod:`model_free.meta` and
:mod:`model_free.keras_optimizer`; only ``run.perf`` (and its tests) import it.
"""

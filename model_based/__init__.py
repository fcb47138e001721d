"""Model-based L2O: unrolled networks (the LISTA family) and the progressive trainer.

Importing the package registers its unrolled models by name (``open_l2o_tf.registry``,
kind ``"model"``, interface ``"unrolled"``) and imports every registered model's module,
so each class is known to Keras and a saved ``.keras`` file loads in a fresh process with
``import model_based`` then ``keras.saving.load_model(path)``.  (This imports TensorFlow.)

A new model is one module (a subclass of :class:`model_based.base.UnrolledModel`,
decorated with ``keras.saving.register_keras_serializable``) plus one line below.  Its
info: ``commands`` (default ``("sparse_recovery",)``; ``"lasso"``: also trained on the
Lasso loss by ``run.lasso``), ``paper`` / ``quick`` (the benchmark suites that run it,
:func:`open_l2o_tf.registry.in_suite`).
"""
from open_l2o_tf import registry as _registry

_SPARSE_LASSO = ("sparse_recovery", "lasso")
for _name, _target, _info in (
        ("lista", "model_based.lista:Lista", dict(commands=_SPARSE_LASSO)),
        ("lista_cp", "model_based.lista_cp:ListaCp", dict(quick=())),
        ("lista_cpss", "model_based.lista_cpss:ListaCpss", {}),
        ("alista", "model_based.alista:Alista",
         dict(commands=_SPARSE_LASSO, paper=("sparse_recovery",), quick=("sparse_recovery",))),
        ("lamp", "model_based.lamp:Lamp", dict(quick=())),
        ("lfista", "model_based.lfista:Lfista", dict(quick=())),
        ("glista", "model_based.glista:Glista", dict(quick=())),
        ("tista", "model_based.tista:Tista", dict(paper=(), quick=())),        # not in Fig. 5
        ("tilista", "model_based.tilista:Tilista", dict(paper=(), quick=())),
        ("step_lista", "model_based.step_lista:StepLista", dict(commands=("lasso",))),
):
    _registry.register("model", _name, _target, **_info)

# every registered model's module registers its class with Keras when imported
_registry.import_all("model")

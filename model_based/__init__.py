"""Model-based L2O: unrolled networks (the LISTA family) and the progressive trainer.

Importing the package registers its unrolled models by name (``open_l2o_tf.registry``,
kind ``"model"``; a new model is a new module, a subclass of
:class:`model_based.base.UnrolledModel`, plus one line here) and registers every unrolled
model with Keras, so a saved ``.keras`` file loads in a fresh process with
``import model_based`` then ``keras.saving.load_model(path)``.  (This imports TensorFlow.)
"""
from open_l2o_tf import registry as _registry

for _name, _target in (
        ("lista", "model_based.lista:Lista"),
        ("lista_cp", "model_based.lista_cp:ListaCp"),
        ("lista_cpss", "model_based.lista_cpss:ListaCpss"),
        ("alista", "model_based.alista:Alista"),
        ("lamp", "model_based.lamp:Lamp"),
        ("lfista", "model_based.lfista:Lfista"),
        ("glista", "model_based.glista:Glista"),
        ("tista", "model_based.tista:Tista"),
        ("tilista", "model_based.tilista:Tilista"),
        ("step_lista", "model_based.step_lista:StepLista"),
):
    _registry.register("model", _name, _target)


# every model module registers its class with Keras when imported
from model_based import (alista, glista, lamp, lfista, lista, lista_cp, lista_cpss,  # noqa: F401,E402
                         step_lista, tilista, tista)

"""A test-only registry entry: a copy of LISTA under another name.

It shows that a model registered in one line is covered by the contract suite
(``tests/test_contracts.py``) without any new test code.
"""
import keras

from model_based.lista import Lista
from open_l2o_tf import registry


@keras.saving.register_keras_serializable(package="open_l2o_tf_tests")
class ListaCopy(Lista):
    """LISTA, unchanged, under another class name."""


registry.register("model", "lista_copy", ListaCopy)

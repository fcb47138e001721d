"""Model-based L2O: unrolled networks (the LISTA family) and the progressive trainer.

Importing the package registers every unrolled model with Keras, so a saved ``.keras``
file loads in a fresh process with ``import model_based`` then
``keras.saving.load_model(path)``.
"""
from model_based import (alista, glista, lamp, lfista, lista, lista_cp, lista_cpss,  # noqa: F401
                         step_lista, tilista, tista)

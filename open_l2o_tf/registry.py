"""The single place where a name maps to code.

Each table maps a public name (as used by ``--model``/``--optimizer``/``--problem`` flags
and in ``results.json``) to ``"module:attribute"``.  Objects are imported lazily, so
importing the registry is cheap and free of import cycles.  Adding a model, optimizer or
optimizee is a new module plus one line here.
"""
import importlib

from open_l2o_tf.errors import UserError

# Unrolled networks (model-based L2O): Keras models from measurements to codes.
MODELS = {
    "lista": "model_based.lista:Lista",
    "lista_cp": "model_based.lista_cp:ListaCp",
    "lista_cpss": "model_based.lista_cpss:ListaCpss",
    "alista": "model_based.alista:Alista",
    "lamp": "model_based.lamp:Lamp",
    "lfista": "model_based.lfista:Lfista",
    "glista": "model_based.glista:Glista",
    "tista": "model_based.tista:Tista",
    "tilista": "model_based.tilista:Tilista",
    "step_lista": "model_based.step_lista:StepLista",
}

# Classic baselines: gradient transformations (init/update) or specialised runners.
CLASSIC = {
    "ista": "open_l2o_tf.classic.ista_fista:ista",
    "fista": "open_l2o_tf.classic.ista_fista:fista",
    "gd": "open_l2o_tf.classic.first_order:gd",
    "sgd": "open_l2o_tf.classic.first_order:sgd",
    "adam": "open_l2o_tf.classic.first_order:adam",
    "rmsprop": "open_l2o_tf.classic.first_order:rmsprop",
    "gd_ls": "open_l2o_tf.classic.line_search:gd_line_search",
    "nag_ls": "open_l2o_tf.classic.line_search:nag_line_search",
    "oracle": "open_l2o_tf.classic.run_and_inspect:run_and_inspect",
    "gda": "open_l2o_tf.classic.gda:alternating_gda",
    "adam_gda": "open_l2o_tf.classic.gda:alternating_gda",
}

# Learned update rules (model-free L2O): Keras models from gradients/state to steps.
LEARNED = {
    "l2o_dm": "model_free.dm:L2ODM",
    "l2o_rnnprop": "model_free.rnnprop:L2ORNNprop",
    # L2O-enhanced = the L2O-DM network trained with curriculum + imitation.
    "l2o_enhanced": "model_free.dm:L2ODM",
    "l2o_scale": "model_free.scale:L2OScale",
    "l2o_swarm": "model_free.swarm:L2OSwarm",
    # Twin-L2O: a pair of learned optimizers for minimax problems (run.minimax).
    "twin_l2o": "model_free.twin:TwinL2O",
}

# Optimizee families.
OPTIMIZEES = {
    "quadratic": "open_l2o_tf.optimizees.quadratic:Quadratic",
    "lasso": "open_l2o_tf.optimizees.lasso:Lasso",
    "rastrigin": "open_l2o_tf.optimizees.rastrigin:Rastrigin",
    "mnist_mlp_sigmoid": "open_l2o_tf.optimizees.networks:MnistMLP",
    "mnist_mlp_relu": "open_l2o_tf.optimizees.networks:MnistMLP",
    "mnist_conv": "open_l2o_tf.optimizees.networks:MnistConv",
    "cifar_conv": "open_l2o_tf.optimizees.networks:CifarConv",
    "saddle": "open_l2o_tf.optimizees.minimax:Saddle",
    "rotated_saddle": "open_l2o_tf.optimizees.minimax:RotatedSaddle",
    "seesaw": "open_l2o_tf.optimizees.minimax:Seesaw",
    "matrix_game": "open_l2o_tf.optimizees.minimax:MatrixGame",
}

TABLES = {"model": MODELS, "classic": CLASSIC, "learned": LEARNED, "optimizee": OPTIMIZEES}


def get(kind, name):
    """Returns the object registered as ``name`` in table ``kind``.

    Raises :class:`UserError` naming the allowed values when the name is unknown.
    """
    table = TABLES[kind]
    if name not in table:
        raise UserError(f"unknown {kind} {name!r}; expected one of {sorted(table)}")
    module_name, attribute = table[name].split(":")
    return getattr(importlib.import_module(module_name), attribute)


def names(kind):
    return sorted(TABLES[kind])

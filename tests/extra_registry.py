"""Test-only registry entries: a copy of LISTA under another name, L2O-DM with a
meta-training recipe of its own, a classic learning-rate transform (sign GD), a line
search (GD with a slower-shrinking Armijo step) and a proximal solver (ISTA at half the
step).

They show that a model or learned optimizer registered in one line is covered by the
contract suite (``tests/test_contracts.py``) without any new test code, and that the
commands' shared pieces (meta-training, plotting) need no edit for it
(``tests/test_extension.py``).
"""
import keras
import tensorflow as tf

from model_based.lista import Lista
from model_free.rules.dm import L2ODM
from open_l2o_tf import registry


@keras.saving.register_keras_serializable(package="open_l2o_tf_tests")
class ListaCopy(Lista):
    """LISTA, unchanged, under another class name."""


registry.register("model", "lista_copy", ListaCopy)


@keras.saving.register_keras_serializable(package="open_l2o_tf_tests")
class DmWithRecipe(L2ODM):
    """L2O-DM with a meta-training recipe of its own (plain SGD on the sum of losses,
    meta-gradients clipped to +-1): ``model_free.meta.training.meta_train_or_load`` uses it
    with no edit there.  ``calls`` records each use (tests/test_extension.py)."""

    calls = []

    @classmethod
    def meta_training(cls, opt, *, seed=0, horizons=None, meta_lr=None):
        meta_optimizer = keras.optimizers.SGD(meta_lr or 0.05)
        cls.calls.append(dict(opt=opt, seed=seed, horizons=horizons,
                              meta_optimizer=meta_optimizer))
        return dict(meta_optimizer=meta_optimizer, clip_value=1.0)


registry.register("learned", "dm_with_recipe", DmWithRecipe, interface="update",
                  coordinatewise=True)


def sign_gd(learning_rate):
    """Sign gradient descent, ``x_{t+1} = x_t - lr sign(g_t)``: a classic baseline added in
    one line below, then run by run.lasso, run.rastrigin and run.nn_training by name
    (``open_l2o_tf.classic.named``; tests/test_extension.py)."""
    from open_l2o_tf.classic.transforms import GradientTransformation  # pylint: disable=import-outside-toplevel

    def update(grads, state, params=None):
        del params
        return [-learning_rate * tf.sign(g) for g in grads], state

    return GradientTransformation(lambda params: (), update)


registry.register("classic", "sign_gd", sign_gd, transform=True,
                  commands=("lasso", "rastrigin", "nn_training"))


def cautious_gd_ls(loss_fn, params, num_steps, initial_step=0.1):
    """GD with an Armijo search that shrinks its trial step by 0.8 instead of 0.5: a
    line-search baseline added in one line below (``line_search=True``), then run by
    run.rastrigin by name, ``--line_search_scope`` included (tests/test_extension.py)."""
    from open_l2o_tf.classic.line_search import gd_line_search  # pylint: disable=import-outside-toplevel
    return gd_line_search(loss_fn, params, num_steps, initial_step=initial_step, shrink=0.8)


registry.register("classic", "cautious_gd_ls", cautious_gd_ls, line_search=True,
                  commands=("rastrigin",))


def damped_ista(A, y, lam, num_iterations, step=None):
    """ISTA at half the given step: a proximal Lasso solver added in one line below
    (``proximal=True``), then run by run.lasso by name (tests/test_extension.py)."""
    from open_l2o_tf.classic.ista_fista import ista  # pylint: disable=import-outside-toplevel
    return ista(A, y, lam, num_iterations, step=0.5 * step)


registry.register("classic", "damped_ista", damped_ista, proximal=True, commands=("lasso",))

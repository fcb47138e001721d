"""Optimizee families: plain TF functions of a list of parameter tensors.

Importing the package registers them (``open_l2o_tf.registry``, kind ``"optimizee"``).
"""
from open_l2o_tf import registry as _registry
from open_l2o_tf.optimizees.base import Optimizee, as_seed, split_seed, use_xla

__all__ = ["Optimizee", "as_seed", "split_seed", "make_optimizee", "use_xla"]

for _name, _target in (
        ("quadratic", "open_l2o_tf.optimizees.quadratic:Quadratic"),
        ("lasso", "open_l2o_tf.optimizees.lasso:Lasso"),
        ("rastrigin", "open_l2o_tf.optimizees.rastrigin:Rastrigin"),
        ("mnist_mlp_sigmoid", "open_l2o_tf.optimizees.networks:MnistMLP"),
        ("mnist_mlp_relu", "open_l2o_tf.optimizees.networks:MnistMLP"),
        ("mnist_conv", "open_l2o_tf.optimizees.networks:MnistConv"),
        ("mnist_conv_scale", "open_l2o_tf.optimizees.networks:MnistConvScale"),
        ("cifar_conv", "open_l2o_tf.optimizees.networks:CifarConv"),
        ("saddle", "open_l2o_tf.optimizees.minimax:Saddle"),
        ("rotated_saddle", "open_l2o_tf.optimizees.minimax:RotatedSaddle"),
        ("seesaw", "open_l2o_tf.optimizees.minimax:Seesaw"),
        ("matrix_game", "open_l2o_tf.optimizees.minimax:MatrixGame"),
):
    _registry.register("optimizee", _name, _target)


def make_optimizee(name, data_dir=None, split="train", **kwargs):
    """Builds a registered optimizee by name; networks load their data set when no
    ``images``/``labels`` are given (``data_dir``: local directory, see
    :mod:`open_l2o_tf.data.datasets`)."""
    cls = _registry.get("optimizee", name)
    if name.startswith("mnist_mlp"):
        kwargs.setdefault("activation", name.rsplit("_", 1)[1])
    if name.startswith(("mnist", "cifar")) and "images" not in kwargs:
        from open_l2o_tf.data import datasets  # pylint: disable=import-outside-toplevel
        loader = datasets.load_mnist if name.startswith("mnist") else datasets.load_cifar10
        kwargs["images"], kwargs["labels"] = loader(data_dir, split)
    return cls(**kwargs)

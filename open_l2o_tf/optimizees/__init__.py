"""Optimizee families: plain TF functions of a list of parameter tensors."""
from open_l2o_tf.optimizees.base import Optimizee, as_seed, split_seed

__all__ = ["Optimizee", "as_seed", "split_seed", "make_optimizee"]


def make_optimizee(name, data_dir=None, split="train", **kwargs):
    """Builds a registered optimizee by name; networks load their data set when no
    ``images``/``labels`` are given (``data_dir``: local directory, see
    :mod:`open_l2o_tf.data.datasets`)."""
    from open_l2o_tf import registry  # pylint: disable=import-outside-toplevel
    cls = registry.get("optimizee", name)
    if name.startswith("mnist_mlp"):
        kwargs.setdefault("activation", name.rsplit("_", 1)[1])
    if name.startswith(("mnist", "cifar")) and "images" not in kwargs:
        from open_l2o_tf.data import datasets  # pylint: disable=import-outside-toplevel
        loader = datasets.load_mnist if name.startswith("mnist") else datasets.load_cifar10
        kwargs["images"], kwargs["labels"] = loader(data_dir, split)
    return cls(**kwargs)

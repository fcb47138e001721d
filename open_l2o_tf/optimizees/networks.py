"""Neural-network optimizees as plain TF functions of a parameter list (spec model_free §9.4-9.5).

* ``MnistMLP``: flatten -> Dense(20) + sigmoid (or ReLU) -> Dense(10); all weights and
  biases N(0, 0.01^2); mean softmax cross-entropy on a minibatch of 128 drawn uniformly
  with replacement (the L2O-DM ``mnist`` / ``mnist_relu`` problems).
* ``MnistConv``: conv 3x3x16 (stride 1, VALID) -> BN -> ReLU -> maxpool 2 -> conv 5x5x32
  -> BN -> ReLU -> maxpool 2 -> FC 512 -> 10; ``CifarConv``: the same with stride-2 convs
  on 32x32x3 (FC 32 -> 10).  BN uses batch statistics with gamma/beta as optimizee
  parameters (``bn_affine=True``, as the original's classic optimizers see them: its
  ``evaluate_dm.py --optimizer=Adam`` takes every trainable variable), or fixed at 1 / 0
  (``bn_affine=False``, as the original's learned optimizers see them: ``tf.layers``
  creates gamma/beta outside meta.py's ``mock.patch("tensorflow.get_variable")``, so they
  are not optimizee variables; its log prints the six conv/FC tensors only).  The original
  applies a ReLU to the logits (a quirk, ``relu_logits=True`` by default; False is the
  intended network).
* ``MnistConvScale`` (``mnist_conv_scale``): L2O-Scale's own test ConvNet, the same layers
  with batch normalisation in inference mode (fixed, not optimised; see the class).

A network is one instance: ``instance_losses`` returns shape ``(1,)``; ``sample_batch``
returns a minibatch ``{"images", "labels"}``; the MLPs' ``example_losses`` the per-example
cross-entropies (the convnets' batch normalisation couples the examples: None).
"""
import numpy as np
import tensorflow as tf

from open_l2o_tf.errors import UserError
from open_l2o_tf.optimizees.base import Optimizee, as_seed, split_seed


class _Network(Optimizee):
    stochastic = True
    shapes = ()

    def __init__(self, images, labels, batch_size=128):
        if images is None or labels is None:
            raise UserError(f"{self.name} needs training images and labels")
        self.images = tf.constant(np.asarray(images, np.float32))
        self.labels = tf.constant(np.asarray(labels, np.int32))
        if self.images.shape[0] != self.labels.shape[0]:
            raise UserError(f"{self.images.shape[0]} images but {self.labels.shape[0]} labels")
        self.batch_size = int(batch_size)

    def sample_instance(self, seed, batch_size=None):
        return {}

    def init_params(self, seed, instance=None):
        seeds = split_seed(seed, len(self.shapes))
        return [self.init_value(shape, s) for shape, s in zip(self.shapes, seeds)]

    def init_value(self, shape, seed):
        return 0.01 * tf.random.stateless_normal(shape, seed)

    def sample_batch(self, seed):
        idx = tf.random.stateless_uniform([self.batch_size], as_seed(seed), 0,
                                          tf.shape(self.images)[0], tf.int32)
        return {"images": tf.gather(self.images, idx), "labels": tf.gather(self.labels, idx)}

    def seeded_batch(self, step, seed):
        """The minibatch of step ``step`` of the run ``seed``: ``sample_batch([seed, step])``
        (``run_optimizer``'s ``batch_fn`` with its ``seed``)."""
        return self.sample_batch(tf.stack([tf.cast(seed, tf.int32), tf.cast(step, tf.int32)]))

    def batch_losses(self, params, batch):
        """``instance_losses(params, {}, batch)`` (``run_optimizer``'s ``loss_fn``)."""
        return self.instance_losses(params, {}, batch)

    def logits(self, params, images):
        raise NotImplementedError

    def _cross_entropy(self, params, batch):
        logits = self.logits(params, batch["images"])
        return tf.nn.sparse_softmax_cross_entropy_with_logits(batch["labels"], logits)

    def example_losses(self, params, instance, batch):
        """The cross-entropy of every example of ``batch`` (its mean is the loss), so a
        minibatch can be split over replicas (``MetaTrainer`` under a strategy)."""
        del instance
        return self._cross_entropy(params, batch)

    def instance_losses(self, params, instance, batch=None):
        return tf.reshape(tf.reduce_mean(self._cross_entropy(params, batch)), [1])


class MnistMLP(_Network):
    """784 -> hidden (sigmoid or relu) -> 10."""

    def __init__(self, images=None, labels=None, activation="sigmoid", hidden=20,
                 batch_size=128):
        if activation not in ("sigmoid", "relu"):
            raise UserError(f"activation must be 'sigmoid' or 'relu', got {activation!r}")
        self.name = f"mnist_mlp_{activation}"
        self.activation = activation
        super().__init__(images, labels, batch_size)
        d = int(np.prod(self.images.shape[1:]))
        self.shapes = ((d, hidden), (hidden,), (hidden, 10), (10,))

    def logits(self, params, images):
        w1, b1, w2, b2 = params
        h = tf.reshape(images, [tf.shape(images)[0], -1]) @ w1 + b1
        h = tf.sigmoid(h) if self.activation == "sigmoid" else tf.nn.relu(h)
        return h @ w2 + b2


class _ConvNet(_Network):
    stride = 1
    # batch normalisation with batch statistics: a part of a minibatch has other statistics,
    # so the loss is not a mean of per-example losses (no minibatch split over replicas)
    example_losses = None
    # XLA's CPU convolutions (and their gradients) measured 20-50x slower than TensorFlow's
    # kernels on this network (run.perf --what=networks); compiled with XLA on GPUs only
    xla_on_cpu = False

    def __init__(self, images=None, labels=None, batch_size=128, relu_logits=True,
                 bn_affine=True):
        super().__init__(images, labels, batch_size)
        self.relu_logits = bool(relu_logits)
        self.bn_affine = bool(bn_affine)
        c = int(self.images.shape[-1])
        size = int(self.images.shape[1])
        for k in (3, 5):
            size = (size - k) // self.stride + 1
            size = size // 2
        if size < 1:
            raise UserError(f"images of size {self.images.shape[1]} are too small for "
                            f"{self.name}")
        flat = size * size * 32
        self.shapes = ((3, 3, c, 16), (16,), (16,), (16,), (5, 5, 16, 32), (32,), (32,),
                       (32,), (flat, 10), (10,))
        if not self.bn_affine:
            self.shapes = tuple(self.shapes[i] for i in (0, 1, 4, 5, 8, 9))

    def init_value(self, shape, seed):
        return tf.zeros(shape) if len(shape) == 1 else super().init_value(shape, seed)

    def init_params(self, seed, instance=None):
        params = super().init_params(seed, instance)
        if self.bn_affine:
            params[2] = tf.ones_like(params[2])   # BN gamma
            params[6] = tf.ones_like(params[6])
        return params

    def _conv_params(self, params, i):
        """Layer ``i`` (0, 1)'s ``(w, b, gamma, beta)``; gamma = 1, beta = 0 when fixed."""
        if self.bn_affine:
            return params[4 * i:4 * i + 4]
        w, b = params[2 * i:2 * i + 2]
        return w, b, tf.ones_like(b), tf.zeros_like(b)

    def logits(self, params, images):
        h = images
        for i in (0, 1):
            w, b, gamma, beta = self._conv_params(params, i)
            h = tf.nn.conv2d(h, w, self.stride, "VALID") + b
            mean, var = tf.nn.moments(h, axes=[0, 1, 2])
            h = tf.nn.batch_normalization(h, mean, var, beta, gamma, 1e-3)
            h = tf.nn.max_pool2d(tf.nn.relu(h), 2, 2, "VALID")
        h = tf.reshape(h, [tf.shape(h)[0], -1]) @ params[-2] + params[-1]
        return tf.nn.relu(h) if self.relu_logits else h


class MnistConv(_ConvNet):
    name = "mnist_conv"
    stride = 1


class MnistConvScale(_ConvNet):
    """L2O-Scale's own evaluation ConvNet (``mnist_conv_scale``): the network of
    ``problems/problem_generator.py`` ``ConvNet`` with ``mode="test"``, as
    ``problem_sets.test_mnist_conv_problems`` builds it (VITA-Group/Open-L2O,
    ``Model_Free_L2O/L2O-Scale/L2O-Scale-Evaluation/``): conv 3x3x16 and 5x5x32, stride 1,
    VALID, each + bias -> batch normalisation -> ReLU -> maxpool 2 (``problem_generator.py:
    479-487``), FC 512 -> 10 with a ReLU on the logits (``:489-491``).  Six parameter
    tensors (``:450-462``), every one, biases too, drawn N(0, 0.01^2) (``:466-469``).  The
    batch normalisation is ``tf.layers.batch_normalization(training=False)`` (``:473,484``):
    inference mode with its fresh moving statistics (mean 0, variance 1) and gamma = 1,
    beta = 0, which are not among the optimised parameters and are never updated, so each
    layer is scaled by ``1 / sqrt(1 + 1e-3)`` (epsilon 1e-3, the layer's default).  The MNIST
    test split (``test_mnist_conv_problems``: ``datasets.mnist(train=False)``, batch 128) is
    ``run.nn_training``'s default for learned optimizers."""
    name = "mnist_conv_scale"
    stride = 1
    BN_SCALE = float(1.0 / np.sqrt(1.0 + 1e-3))

    def __init__(self, images=None, labels=None, batch_size=128, relu_logits=True):
        super().__init__(images, labels, batch_size, relu_logits, bn_affine=False)

    def init_value(self, shape, seed):
        return _Network.init_value(self, shape, seed)

    def init_params(self, seed, instance=None):
        return _Network.init_params(self, seed, instance)

    def logits(self, params, images):
        h = images
        for i in (0, 2):
            w, b = params[i:i + 2]
            h = (tf.nn.conv2d(h, w, self.stride, "VALID") + b) * self.BN_SCALE
            h = tf.nn.max_pool2d(tf.nn.relu(h), 2, 2, "VALID")
        h = tf.reshape(h, [tf.shape(h)[0], -1]) @ params[4] + params[5]
        return tf.nn.relu(h) if self.relu_logits else h


class CifarConv(_ConvNet):
    name = "cifar_conv"
    stride = 2

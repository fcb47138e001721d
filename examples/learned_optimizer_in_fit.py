"""Meta-train a learned optimizer, then use it in ``model.fit`` on a Keras model.

    python examples/learned_optimizer_in_fit.py            # L2O-RNNprop, 200 episodes
    python examples/learned_optimizer_in_fit.py --small    # 2 episodes (seconds)

L2O-RNNprop (Lv et al. 2017: an LSTM fed with Adam-like normalised gradients, step
alpha * tanh(out)) is meta-trained on a 784-20-10 sigmoid MLP fitted to generated
"images" (the optimizee of the paper's Fig. 8, here on random data so no download is
needed), then drives ``model.fit`` of a Keras MLP of the same shape through
``LearnedKerasOptimizer``, beside Adam.  Meta-training resumes from WORKDIR/ckpt.
"""
import argparse
import os
import tempfile

import keras
import numpy as np

from model_free.keras_optimizer import LearnedKerasOptimizer
from model_free.meta import training
from open_l2o_tf.optimizees.networks import MnistMLP


def make_data(count, seed=0, d=784, classes=10):
    """Random images and the labels of a random linear teacher."""
    rng = np.random.default_rng(seed)
    images = rng.random((count, d)).astype(np.float32)
    teacher = rng.normal(size=(d, classes)).astype(np.float32)
    return images, np.argmax((images - 0.5) @ teacher, axis=1).astype(np.int32)


def keras_mlp(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(20, activation="sigmoid"),
                             keras.layers.Dense(10)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tiny run (seconds)")
    parser.add_argument("--optimizer", default="l2o_rnnprop",
                        help="a registered coordinate-wise learned optimizer (l2o_dm, ...)")
    parser.add_argument("--workdir", default=None, help="meta-training checkpoints, tb/")
    args = parser.parse_args()
    small = args.small or os.environ.get("OPEN_L2O_EXAMPLES_SMALL") == "1"
    workdir = args.workdir or tempfile.mkdtemp(prefix="learned-")
    images, labels = make_data(1024 if small else 10_000)

    problem = MnistMLP(images, labels, activation="sigmoid", batch_size=128)
    opt, info = training.meta_train_or_load(
        args.optimizer, problem, synthetic=False, workdir=workdir,
        episodes=2 if small else 200, unroll=20 if small else 100, truncation=20,
        progress=lambda *a, **k: None)
    print(f"meta-trained {args.optimizer}: {info['train_steps']} steps, "
          f"{info['train_seconds']:.1f} s")

    epochs = 2 if small else 5
    for name, keras_opt in (("learned", LearnedKerasOptimizer(opt)),
                            ("adam", keras.optimizers.Adam(1e-2))):
        model = keras_mlp(seed=0)
        model.compile(optimizer=keras_opt,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(images, labels, batch_size=128, epochs=epochs, verbose=0,
                            shuffle=False)
        losses = " ".join(f"{v:.4f}" for v in history.history["loss"])
        print(f"model.fit with {name:7s}: loss per epoch {losses}")


if __name__ == "__main__":
    main()

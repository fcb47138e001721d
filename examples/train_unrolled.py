"""Train and evaluate an unrolled model (LISTA) from Python, on generated data.

    python examples/train_unrolled.py            # 250x500, 16 layers (minutes)
    python examples/train_unrolled.py --small    # 25x50, 3 layers (seconds)

Sparse recovery y = A x (A Gaussian with unit-norm columns in expectation, x
Bernoulli(0.1)-Gaussian), LISTA (Gregor & LeCun 2010: x_{t+1} = soft(W1 y + W2 x_t,
theta_t)) trained layer by layer with the progressive schedule of the paper, then the
test NMSE (dB) after every layer.  TensorBoard: tensorboard --logdir WORKDIR/tb
(the chart test/nmse_db_by_layer, step = layer).
"""
import argparse
import os
import tempfile

import numpy as np

from model_based.factory import build_model
from model_based.progressive import ProgressiveTrainer, evaluate
from open_l2o_tf import logging as olog


def make_data(m, n, count, seed, A=None, p=0.1):
    rng = np.random.default_rng(seed)
    if A is None:
        A = (rng.normal(size=(m, n)) / np.sqrt(m)).astype(np.float32)
    x = (rng.normal(size=(count, n)) * (rng.random((count, n)) < p)).astype(np.float32)
    return A, x @ A.T, x


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tiny run (seconds)")
    parser.add_argument("--model", default="lista", help="any registered unrolled model")
    parser.add_argument("--workdir", default=None, help="checkpoints, model.keras, tb/")
    args = parser.parse_args()
    small = args.small or os.environ.get("OPEN_L2O_EXAMPLES_SMALL") == "1"
    m, n, layers = (25, 50, 3) if small else (250, 500, 16)
    workdir = args.workdir or tempfile.mkdtemp(prefix="unrolled-")

    A, y_train, x_train = make_data(m, n, 512 if small else 50_000, seed=0)
    _, y_val, x_val = make_data(m, n, 128 if small else 1000, seed=1, A=A)
    _, y_test, x_test = make_data(m, n, 128 if small else 1000, seed=2, A=A)

    model = build_model(args.model, A, None, layers)
    tb = olog.TensorBoard(os.path.join(workdir, "tb"))
    trainer = ProgressiveTrainer(
        model, (y_train, x_train), (y_val, x_val), (y_test, x_test),
        ckpt_dir=os.path.join(workdir, "ckpt"), tb=tb, progress=lambda *a, **k: None,
        steps_per_epoch=5 if small else 400, max_epochs=1 if small else None,
        patience=1 if small else 5, batch_size=64 if small else 128,
        jit_compile=not small)
    trainer.train()                       # resumes from ckpt/ when re-run
    curve = evaluate(model, y_test, x_test, tb=tb)
    print(f"{args.model} {m}x{n}, test NMSE (dB) by layer:")
    for layer, value in enumerate(curve, start=1):
        print(f"  layer {layer:2d}: {value:7.2f} dB")
    print(f"trained {trainer.state['train_seconds']:.1f} s, {trainer.train_steps} steps; "
          f"tensorboard --logdir {workdir}/tb")


if __name__ == "__main__":
    main()

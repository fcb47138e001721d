"""Bring your own optimizer: register a new update rule and run one paper panel
(Rastrigin, n = 2, Fig. 7) against the toolbox's optimizers.

    python examples/bring_your_own_optimizer.py            # 128 instances x 10 starts, 1,000 steps
    python examples/bring_your_own_optimizer.py --small    # 8 instances, 50 steps (seconds)

The new rule is signed gradient descent with a decaying step,
x_{k+1} = x_k - lr / sqrt(k + 1) * sign(g_k), an optax-style GradientTransformation
registered in one line (``registry.register("classic", ..., transform=True)``); from then on
``run.rastrigin --import=THIS_MODULE --optimizer=decayed_sign_gd`` and ``run.benchmark``
take it too.  Prints the mean loss at a few steps per method and saves the panel's plot.
"""
import argparse
import os
import tempfile

import numpy as np
import tensorflow as tf

from open_l2o_tf import plotting, registry
from open_l2o_tf.classic.transforms import GradientTransformation

try:                                 # a checkout, or the installed toolbox
    from run import rastrigin
except ImportError:                  # pragma: no cover
    from open_l2o_tf.run import rastrigin


def decayed_sign_gd(learning_rate):
    """x_{k+1} = x_k - learning_rate / sqrt(k + 1) * sign(g_k)."""

    def init(params):
        del params
        return tf.zeros([], tf.float32)

    def update(grads, k, params=None):
        del params
        step = learning_rate / tf.sqrt(k + 1.0)
        return [-step * tf.sign(g) for g in grads], k + 1.0

    return GradientTransformation(init, update)


registry.register("classic", "decayed_sign_gd", decayed_sign_gd, transform=True,
                  commands=("lasso", "rastrigin", "nn_training"),
                  style=("Decayed sign GD", "#d62728", "x"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tiny run (seconds)")
    parser.add_argument("--out", default=None, help="folder for the plot (default: a temp dir)")
    args = parser.parse_args()
    small = args.small or os.environ.get("OPEN_L2O_EXAMPLES_SMALL") == "1"
    count, starts, steps = (8, 1, 50) if small else (128, 10, 1000)
    out = args.out or tempfile.mkdtemp(prefix="byo-")
    os.makedirs(out, exist_ok=True)

    family, test, x0 = rastrigin.build_problem(n=2, count=count, starts=starts, seed=0)
    methods = {"decayed_sign_gd": dict(lr=0.5), "adam": {}, "rmsprop": {}, "gd_ls": {},
               "nag_ls": {}}
    curves = {}
    for name, options in methods.items():
        curve = rastrigin.run_classic(name, family, test, x0, steps, starts=starts, **options)
        curves[name] = np.asarray(curve).mean(axis=1)       # mean over instances
    marks = [k for k in (0, 10, 100, 1000) if k <= steps] + ([steps] if steps not in
                                                             (0, 10, 100, 1000) else [])
    print(f"Rastrigin n=2, mean loss over {count * starts} runs "
          f"(lower bound {float(np.mean(family.lower_bound(test))):.2f}):")
    print(f"{'method':>16} " + " ".join(f"{f'loss[{k}]':>10}" for k in marks))
    for name, curve in curves.items():
        print(f"{name:>16} " + " ".join(f"{curve[k]:10.3f}" for k in marks))

    import matplotlib                                         # noqa: E402
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt                           # noqa: E402
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, curve in curves.items():
        label, colour, marker = plotting.style(name)
        ax.plot(np.arange(len(curve)), curve, color=colour, marker=marker,
                markevery=max(1, len(curve) // 8), label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean loss")
    ax.set_title("Rastrigin, n = 2")
    ax.legend(fontsize=8)
    path = os.path.join(out, "rastrigin_n2.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

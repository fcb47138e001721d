"""Writes a sparse-recovery or Lasso data directory in the original Open-L2O layout.

    python -m run.make_data --setting=noiseless --out=DIR [--seed=N]
        [--num_train=N --num_val=N --num_test=N] [--m=M --n=N]
    python -m run.make_data --setting=coherent --out=DIR --image_dir=../shared/data/bsds500
    python -m run.make_data --setting=coherent --out=DIR --dictionary=D_256x512.npy

Files: A.npy, W.npy, train_data.npy, val_data.npy, test_data.npy (rows [y | x]), meta.json.
Sizes default to the paper's (51,200 / 1,024 / 1,024 sparse recovery, 12,800 / 1,280 /
1,280 Lasso; 256x512, large 512x1024, Lasso 5x10 and 25x50).
"""
import os
import time

from absl import flags

from open_l2o_tf.data import sparse_recovery
from run import common

flags.DEFINE_enum("setting", None, sorted(sparse_recovery.SETTINGS), "Which data set.")
flags.DEFINE_string("out", None, "Output directory.")
flags.DEFINE_integer("seed", 0, "Random seed (A and the three splits).")
for _name in ("num_train", "num_val", "num_test", "m", "n"):
    flags.DEFINE_integer(_name, None, f"Override the setting's paper value of {_name}.")
flags.DEFINE_string("dictionary", None, "coherent: a (m, n) .npy dictionary to use as A.")
flags.DEFINE_string("image_dir", None, "coherent: folder of natural images to learn the "
                    "dictionary from (default $OPEN_L2O_DATA_DIR/bsds500 or "
                    "../shared/data/bsds500 when present).")
flags.DEFINE_integer("dictionary_iterations", None, "coherent: block proximal gradient "
                     "iterations (default 200).")
flags.DEFINE_bool("W", True, "Compute the ALISTA weight W.npy (--noW to skip).")
flags.mark_flags_as_required(["setting", "out"])
FLAGS = flags.FLAGS


def _default_image_dir():
    candidates = []
    if os.environ.get("OPEN_L2O_DATA_DIR"):
        candidates.append(os.path.join(os.environ["OPEN_L2O_DATA_DIR"], "bsds500"))
    candidates.append(os.path.join("..", "shared", "data", "bsds500"))
    for candidate in candidates:
        if os.path.isdir(candidate):
            return candidate
    return candidates[0]


def main(argv):
    del argv
    for name in ("num_train", "num_val", "num_test", "m", "n", "dictionary_iterations"):
        value = getattr(FLAGS, name)
        if value is not None and value <= 0:
            raise common.UserError(f"--{name} must be a positive integer, got {value}")
    image_dir = FLAGS.image_dir
    if FLAGS.setting == "coherent" and FLAGS.dictionary is None and image_dir is None:
        image_dir = _default_image_dir()
    start = time.time()
    meta = sparse_recovery.generate(
        FLAGS.setting, FLAGS.out, m=FLAGS.m, n=FLAGS.n, num_train=FLAGS.num_train,
        num_val=FLAGS.num_val, num_test=FLAGS.num_test, seed=FLAGS.seed,
        dictionary=FLAGS.dictionary, image_dir=image_dir, compute_W=FLAGS.W,
        dictionary_iterations=FLAGS.dictionary_iterations, progress=print)
    print(f"[make_data] {FLAGS.setting} {meta['m']}x{meta['n']} -> {FLAGS.out} "
          f"(mutual coherence of A {meta['mutual_coherence']:.3f}) in "
          f"{time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    common.main_wrapper(main)

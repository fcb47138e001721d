"""Writes a sparse-recovery or Lasso data directory in the original Open-L2O layout.

    python -m run.make_data --setting=noiseless --out=DIR [--seed=N] [--test_seed=K]
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

from open_l2o_tf import logging as olog
from . import common

# the names of open_l2o_tf.data.sparse_recovery.SETTINGS (tested equal; that module imports
# TensorFlow, which the flag definitions should not wait for)
SETTINGS = ["coherent", "large", "lasso_25x50", "lasso_5x10", "noiseless", "noisy"]
flags.DEFINE_enum("setting", None, SETTINGS, "Which data set.")
flags.DEFINE_string("out", None, "Output directory.")
flags.DEFINE_integer("seed", 0, "Random seed (A and the three splits).", lower_bound=0)
flags.DEFINE_integer("test_seed", None, "Draw the test split from this seed instead: the "
                     "same A, W and train/val splits as --seed with a new set of test "
                     "problems (test draws for models tied to A).  Default: --seed's.",
                     lower_bound=0)
for _name in ("num_train", "num_val", "num_test", "m", "n"):
    flags.DEFINE_integer(_name, None, f"Override the setting's paper value of {_name}.",
                         lower_bound=1)
flags.DEFINE_string("dictionary", None, "coherent: a (m, n) .npy dictionary to use as A.")
flags.DEFINE_string("image_dir", None, "coherent: folder of natural images to learn the "
                    "dictionary from (default $OPEN_L2O_DATA_DIR/bsds500 or "
                    "../shared/data/bsds500 when present).")
flags.DEFINE_integer("dictionary_iterations", None, "coherent: block proximal gradient "
                     "iterations (default 200).", lower_bound=1)
flags.DEFINE_bool("W", True, "Compute the ALISTA weight W.npy (--noW to skip).")
flags.DEFINE_bool("overwrite", False, "Replace the data of another command (other setting, "
                  "seed or sizes) that --out holds; without it such a folder is refused.  "
                  "The same command again finds its own data there and does nothing.")
flags.mark_flags_as_required(["setting", "out"])
FLAGS = flags.FLAGS


def _image_dir():
    """coherent without --dictionary: the image folder (--image_dir, else
    $OPEN_L2O_DATA_DIR/bsds500, else ../shared/data/bsds500), checked; else None."""
    if FLAGS.setting != "coherent" or FLAGS.dictionary is not None:
        return None
    return common.find_image_dir(FLAGS.image_dir)


def request():
    """What this command makes: the values of its flags that change the data (recorded as
    ``meta.json``'s ``request``).  A dictionary file counts by its content."""
    image_dir = _image_dir()
    out = {name: getattr(FLAGS, name) for name in (
        "setting", "seed", "m", "n", "num_train", "num_val", "num_test", "W")}
    if FLAGS.test_seed is not None and FLAGS.test_seed != FLAGS.seed:
        out["test_seed"] = FLAGS.test_seed    # absent by default: older data stay the same
    if FLAGS.setting == "coherent":
        out["dictionary"] = (None if FLAGS.dictionary is None else
                             common.data_digest_of_file(FLAGS.dictionary))
        out["image_dir"] = None if image_dir is None else os.path.abspath(image_dir)
        out["dictionary_iterations"] = FLAGS.dictionary_iterations
    return out


def _describe(record):
    sizes = "x".join(str(record.get(k)) for k in ("m", "n") if record.get(k) is not None)
    return ", ".join(f"{k} {v}" for k, v in (("setting", record.get("setting")),
                                             ("size", sizes or "the setting's"),
                                             ("seed", record.get("seed")))
                     + ((("test seed", record["test_seed"]),)
                        if record.get("test_seed") is not None else ()))


def existing_data():
    """``None`` when --out holds no data; ``"same"`` when it holds this command's own
    (complete); else a UserError unless --overwrite (then ``"overwrite"``)."""
    out = FLAGS.out
    names = [n for n in common.DATA_ARRAYS + ("meta.json",)
             if os.path.exists(os.path.join(out, n))]
    if not names:
        return None
    if FLAGS.overwrite:
        return "overwrite"
    try:
        meta = olog.read_json(os.path.join(out, "meta.json"), default=None)
    except common.UserError:
        meta = None
    made = meta.get("request") if isinstance(meta, dict) else None
    wanted = request()
    if made == wanted:
        needed = ["A.npy", "train_data.npy", "val_data.npy", "test_data.npy", "meta.json"]
        if all(os.path.exists(os.path.join(out, n)) for n in needed
               + (["W.npy"] if FLAGS.W else [])):
            return "same"
        return "overwrite"    # an incomplete folder of the same command: made again
    if made is not None:
        what = "; ".join(f"--{k}={made.get(k)!r} there, {wanted.get(k)!r} now"
                         for k in sorted(set(made) | set(wanted))
                         if made.get(k) != wanted.get(k))
    elif isinstance(meta, dict):
        what = f"{_describe(meta)}, made without a record of its command"
    else:
        what = f"{', '.join(names)} without a readable meta.json"
    raise common.UserError(f"--out {out} holds other data ({what}); pass --overwrite to "
                           f"replace it, or use another --out")


def validate():
    """Checks that need no TensorFlow: --out (and the data it holds), --dictionary,
    --image_dir."""
    common.check_workdir(FLAGS.out, "--out")
    if FLAGS.dictionary is not None and not os.path.isfile(FLAGS.dictionary):
        raise common.UserError(f"--dictionary {FLAGS.dictionary} is not a file; expected a "
                               "(m, n) .npy dictionary")
    if FLAGS.image_dir is not None and not os.path.isdir(FLAGS.image_dir):
        raise common.UserError(f"--image_dir {FLAGS.image_dir} is not a directory of images")
    if FLAGS.setting != "coherent" and (FLAGS.dictionary or FLAGS.image_dir):
        raise common.UserError(f"--dictionary/--image_dir apply to --setting=coherent only, "
                               f"not --setting={FLAGS.setting}")
    _image_dir()         # the images of a coherent dictionary, before any work
    existing_data()


def main(argv):
    del argv
    if existing_data() == "same":
        print(f"[make_data] {FLAGS.out} already holds this data ({_describe(request())}); "
              f"nothing to do (--overwrite makes it again)", flush=True)
        return
    from open_l2o_tf.data import sparse_recovery  # pylint: disable=import-outside-toplevel
    image_dir = _image_dir()
    start = time.time()
    meta = sparse_recovery.generate(
        FLAGS.setting, FLAGS.out, m=FLAGS.m, n=FLAGS.n, num_train=FLAGS.num_train,
        num_val=FLAGS.num_val, num_test=FLAGS.num_test, seed=FLAGS.seed,
        dictionary=FLAGS.dictionary, image_dir=image_dir, compute_W=FLAGS.W,
        dictionary_iterations=FLAGS.dictionary_iterations, progress=print,
        request=request(), test_seed=FLAGS.test_seed)
    print(f"[make_data] {FLAGS.setting} {meta['m']}x{meta['n']} -> {FLAGS.out} "
          f"(mutual coherence of A {meta['mutual_coherence']:.3f}) in "
          f"{time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    common.main_wrapper(main, validate)

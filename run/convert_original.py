"""Converts an original Open-L2O weights file to our ``.npz`` format, once.

    python -m run.convert_original IN OUT.npz
    python -m run.convert_original ../shared/data/original_optimizers/dm.cw.l2l-0 dm.npz
    python -m run.convert_original --problem=rastrigin model/cw.l2l-0 dm_rastrigin.npz

``IN`` is an L2O-DM (``*.cw.l2l-0``) or L2O-RNNprop (``*.rp.l2l-0``) pickle of the original
release; it is read without unpickling (:func:`model_free.weights.pretrained.safe_load_pickle`).
``IN`` may also be an original L2O-Scale TensorFlow 1 checkpoint, a prefix
(``.../model.ckpt-0``) or its directory (``../shared/data/original_optimizers/
l2o_scale_hess_cl_mt``), read as tensors only (:mod:`model_free.weights.scale_original`).
``OUT.npz`` holds the weights and the optimizer's config and loads with ``--load=OUT.npz``
(``np.load(..., allow_pickle=False)``).

``--problem``: the problem of the original's ``util.get_config`` the file was trained for;
the converted optimizer gets the original's configuration for it
(:data:`model_free.weights.pretrained.ORIGINAL_DM_CONFIGS`: an L2O-DM output scale 1.0 on
``rastrigin``, ``lasso``, ``quadratic``, ``square_cos``, ``confocal_microscopy_3d``; 0.01
on ``mnist`` and the other networks; RNNprop 0.01 everywhere), and a file whose
preprocessing does not fit that problem is refused.  Without it every file gets 0.01 as
before (right for the released files, all trained on MNIST), and a raw-gradient L2O-DM
(the original's synthetic problems) is converted with a note saying so.
"""
import os

from absl import flags

from open_l2o_tf.errors import UserError
from . import common

# the names of the original's util.get_config (model_free.weights.pretrained.ORIGINAL_PROBLEMS;
# listed here so the flags parse without importing the model-free package)
ORIGINAL_PROBLEMS = ("rastrigin", "lasso", "quadratic", "square_cos", "confocal_microscopy_3d",
                     "mnist", "mnist_relu", "mnist_deeper", "mnist_conv", "cifar_conv", "lenet",
                     "nas", "vgg16", "cifar-multi")
flags.DEFINE_enum("problem", None, list(ORIGINAL_PROBLEMS),
                  "The problem of the original's util.get_config the file was trained for: "
                  "the converted optimizer gets the original's configuration for it (L2O-DM: "
                  "output scale 1.0 and raw gradients on rastrigin, lasso, quadratic, "
                  "square_cos, confocal_microscopy_3d; LogAndSign and 0.01 on mnist and the "
                  "other networks; RNNprop: 0.01).  Default: 0.01 for every file, as before "
                  "(right for the released files, trained on MNIST); a raw-gradient L2O-DM is "
                  "then converted with a note.")
FLAGS = flags.FLAGS


def validate(argv):
    """The arguments, OUT writable and IN an original file, read without TensorFlow."""
    args = argv[1:]
    if len(args) != 2:
        raise UserError(f"expected two arguments IN OUT.npz, got {len(args)}: "
                        "python -m run.convert_original IN OUT.npz")
    src, out = args
    if os.path.isdir(out):
        raise UserError(f"OUT {out} is a directory, expected a file name ending in .npz")
    if not out.endswith(".npz"):
        raise UserError(f"OUT {out} must end in .npz")
    common.check_writable_file(out, "OUT")
    from model_free.weights import pretrained, scale_original  # pylint: disable=import-outside-toplevel
    if scale_original.is_checkpoint(src):
        scale_original.checkpoint_prefix(src, "IN")     # one clear error if ambiguous
        return
    if not os.path.isfile(src):
        raise UserError(f"IN {src} {'is a directory' if os.path.isdir(src) else 'does not exist'}"
                        "; expected an original Open-L2O *.cw.l2l-0 or *.rp.l2l-0 file")
    with open(src, "rb") as handle:
        if handle.read(4) == b"PK\x03\x04":
            raise UserError(f"IN {src} is a zip/.npz (our format already?); expected an "
                            "original Open-L2O pickle")
    pretrained.peek_kind(src, "IN")


def main(argv):
    from model_free.weights import pretrained  # pylint: disable=import-outside-toplevel
    from model_free.weights import scale_original  # pylint: disable=import-outside-toplevel
    src, out = argv[1:]
    if scale_original.is_checkpoint(src):
        name, opt = scale_original.load_checkpoint(src)
    else:
        name, opt = pretrained.load_original(src, problem=FLAGS.problem)
    pretrained.save_optimizer(opt, out)
    scale = (f", output scale {opt.output_scale:g}" if hasattr(opt, "output_scale")
             else "")           # an L2O-Scale checkpoint has no output scale
    print(f"[convert_original] {src}: {name} ({sum(int(w.numpy().size) for w in opt.weights)}"
          f" weights{scale}{', problem ' + FLAGS.problem if FLAGS.problem else ''}) -> {out}",
          flush=True)
    note = pretrained.original_note(name, opt, FLAGS.problem)
    if note:
        print(note, flush=True)


if __name__ == "__main__":
    common.main_wrapper(main, validate)

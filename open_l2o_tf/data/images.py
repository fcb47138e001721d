"""The image files of a folder of natural images (BSDS500), without TensorFlow: the
commands check ``--image_dir`` before any work."""
import glob
import os

from open_l2o_tf.errors import UserError

_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm")


def list_images(image_dir):
    if not os.path.isdir(image_dir):
        raise UserError(f"image folder {image_dir} does not exist; download BSDS500 "
                        f"(BSR_bsds500.tgz, BSDS500/data/images) and pass its folder with "
                        f"--image_dir, or give --dictionary=FILE.npy")
    files = sorted(f for f in glob.glob(os.path.join(image_dir, "**", "*"), recursive=True)
                   if f.lower().endswith(_EXTENSIONS))
    if not files:
        raise UserError(f"image folder {image_dir} has no images ({', '.join(_EXTENSIONS)})")
    return files

"""A coherent dictionary learned from natural-image patches (Fig. 5c, spec model_based §10.2).

The paper learned its 256x512 dictionary from 16x16 patches of BSDS500 images "with a
block proximal gradient method".  We solve

``min_{D, Z} 1/2 ||X - D Z||_F^2 + lam ||Z||_1``  s.t. every column of D has unit norm,

alternating one proximal-gradient step in the codes,
``Z <- eta_{lam/Lz}(Z - (1/Lz) D^T (D Z - X))`` with ``Lz = ||D||_2^2``, and one projected
gradient step in the dictionary, ``D <- P(D - (1/Ld) (D Z - X) Z^T)`` with
``Ld = ||Z||_2^2`` and P the column normalisation (block proximal gradient, Xu & Yin 2013).
Patches are zero-mean and scaled to unit norm; D starts from random patches.
"""
import glob
import os

import numpy as np
import tensorflow as tf

from open_l2o_tf.data.images import list_images  # noqa: F401  (re-exported)
from open_l2o_tf.errors import UserError, require_positive_int



def extract_patches(image_dir, patch=16, num_patches=20000, seed=0, max_images=400):
    """``(patch*patch, num_patches)`` float32 zero-mean unit-norm grayscale patches."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    require_positive_int(patch, "patch")
    require_positive_int(num_patches, "num_patches")
    files = list_images(image_dir)[:max_images]
    rng = np.random.default_rng(seed)
    per_image = int(np.ceil(num_patches / len(files)))
    out = []
    for path in files:
        try:
            with Image.open(path) as image:
                gray = np.asarray(image.convert("L"), np.float32) / 255.0
        except Exception as err:  # pylint: disable=broad-except
            raise UserError(f"image {path} cannot be read ({type(err).__name__})") from None
        h, w = gray.shape
        if h < patch or w < patch:
            continue
        rows = rng.integers(0, h - patch + 1, per_image)
        cols = rng.integers(0, w - patch + 1, per_image)
        idx = np.arange(patch)
        blocks = gray[rows[:, None, None] + idx[None, :, None],
                      cols[:, None, None] + idx[None, None, :]]
        out.append(blocks.reshape(per_image, -1))
    if not out:
        raise UserError(f"no image in {image_dir} is at least {patch}x{patch} pixels")
    X = np.concatenate(out)[:num_patches]
    X = X - X.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    X = X[norms[:, 0] > 1e-3] / norms[norms[:, 0] > 1e-3]
    return X.T.astype(np.float32)


@tf.function
def _bpg(X, D, lam, iterations):
    Z = tf.zeros([tf.shape(D)[1], tf.shape(X)[1]], X.dtype)

    def spectral2(M):
        v = tf.ones([tf.shape(M)[1], 1], M.dtype)
        for _ in range(20):  # power iteration for ||M||_2^2
            v = tf.matmul(M, tf.matmul(M, v), transpose_a=True)
            v = v / tf.norm(v)
        return tf.reduce_sum(tf.square(tf.matmul(M, v)))

    def body(k, D, Z):
        Lz = spectral2(D) * 1.01
        G = Z - tf.matmul(D, tf.matmul(D, Z) - X, transpose_a=True) / Lz
        Z = tf.sign(G) * tf.maximum(tf.abs(G) - lam / Lz, 0.0)
        Ld = tf.maximum(spectral2(tf.transpose(Z)) * 1.01, 1e-8)
        D = D - tf.matmul(tf.matmul(D, Z) - X, Z, transpose_b=True) / Ld
        D = D / tf.maximum(tf.norm(D, axis=0, keepdims=True), 1e-12)
        return k + 1, D, Z

    _, D, Z = tf.while_loop(lambda k, D, Z: k < iterations, body, (tf.constant(0), D, Z))
    residual = tf.reduce_sum(tf.square(X - tf.matmul(D, Z))) / tf.reduce_sum(tf.square(X))
    return D, residual, tf.reduce_mean(tf.cast(tf.abs(Z) > 0, tf.float32))


def learn_dictionary(patches, n_atoms=512, lam=0.1, iterations=200, seed=0, chunks=10,
                     progress=None):
    """Learns a ``(d, n_atoms)`` unit-norm dictionary from ``patches`` (d, P).

    Returns ``(D, info)`` with the relative residual and code density of the last chunk.
    """
    require_positive_int(n_atoms, "n_atoms")
    require_positive_int(iterations, "iterations")
    X = tf.constant(patches, tf.float32)
    rng = np.random.default_rng(seed)
    start = rng.choice(patches.shape[1], n_atoms, replace=patches.shape[1] < n_atoms)
    D = tf.constant(patches[:, start] + 0.01 * rng.standard_normal((patches.shape[0], n_atoms)),
                    tf.float32)
    D = D / tf.norm(D, axis=0, keepdims=True)
    done, info = 0, {}
    per_chunk = max(1, iterations // chunks)
    while done < iterations:
        step = min(per_chunk, iterations - done)
        D, residual, density = _bpg(X, D, tf.constant(lam, tf.float32), tf.constant(step))
        done += step
        info = {"relative_residual": float(residual), "code_density": float(density),
                "iterations": done}
        if progress:
            progress(f"[dictionary] {done}/{iterations} it. residual={float(residual):.3f} "
                     f"density={float(density):.3f} coherence={mutual_coherence(D.numpy()):.3f}")
    return D.numpy().astype(np.float32), info


def dictionary_from_images(image_dir, m=256, n=512, seed=0, iterations=None,
                           num_patches=None, progress=None):
    """A unit-norm ``(m, n)`` dictionary learned from sqrt(m) x sqrt(m) image patches."""
    patch = int(round(np.sqrt(m)))
    if patch * patch != m:
        raise UserError(f"--m must be a square (patch size x patch size) for a dictionary "
                        f"learned from images, got {m}")
    num_patches = num_patches or max(20 * n, 4000)
    iterations = iterations or 200
    X = extract_patches(image_dir, patch, num_patches, seed)
    D, info = learn_dictionary(X, n, iterations=iterations, seed=seed, progress=progress)
    info.update(num_patches=X.shape[1], patch=patch)
    return D, info


def mutual_coherence(D):
    """``max_{i != j} |<d_i, d_j>|`` of the column-normalised ``D``."""
    D = np.asarray(D, np.float64)
    D = D / np.maximum(np.linalg.norm(D, axis=0, keepdims=True), 1e-300)
    G = np.abs(D.T @ D)
    np.fill_diagonal(G, 0.0)
    return float(G.max())

"""Sparse-recovery and Lasso data in the original Open-L2O layout (spec model_based §10).

A data directory holds ``A.npy`` (m, n), ``W.npy`` (the ALISTA analytic weight of A),
``train_data.npy``, ``val_data.npy``, ``test_data.npy`` (float32 rows ``[y | x]``) and
``meta.json``.  The recipe (paper Section 4.1, following linear-lista-cpss):

* ``A``: i.i.d. N(0, 1/m) entries, every column scaled to unit l2 norm, one A per setting;
  for ``coherent`` a dictionary learned from natural-image patches (or a given ``.npy``).
* ``x``: Bernoulli(p = 0.1) support times N(0, 1) magnitudes.
* ``y = A x + sigma * N(0, I)`` with, per sample, ``sigma = std(A x) * 10^(-SNR/20)``.

Everything is generated with TensorFlow's stateless RNG, in chunks, from the seed, so a
setting and a seed give the same files on every machine.
"""
import collections
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from open_l2o_tf import logging as olog
from open_l2o_tf.errors import UserError, require_positive_int
from open_l2o_tf.optimizees.base import as_seed

_SPARSE_SIZES = dict(num_train=51200, num_val=1024, num_test=1024)
_LASSO_SIZES = dict(num_train=12800, num_val=1280, num_test=1280)

SETTINGS = {
    "noiseless": dict(m=256, n=512, p=0.1, snr_db=None, lam=None, source="gaussian",
                      **_SPARSE_SIZES),
    "noisy": dict(m=256, n=512, p=0.1, snr_db=20.0, lam=None, source="gaussian",
                  **_SPARSE_SIZES),
    "coherent": dict(m=256, n=512, p=0.1, snr_db=None, lam=None, source="dictionary",
                     **_SPARSE_SIZES),
    "large": dict(m=512, n=1024, p=0.1, snr_db=None, lam=None, source="gaussian",
                  **_SPARSE_SIZES),
    "lasso_5x10": dict(m=5, n=10, p=0.1, snr_db=None, lam=0.005, source="gaussian",
                       **_LASSO_SIZES),
    "lasso_25x50": dict(m=25, n=50, p=0.1, snr_db=None, lam=0.005, source="gaussian",
                        **_LASSO_SIZES),
}

SparseData = collections.namedtuple("SparseData", "y x A W meta")

_CHUNK = 8192


def check_setting(setting):
    if setting not in SETTINGS:
        raise UserError(f"unknown setting {setting!r}; expected one of {sorted(SETTINGS)}")
    return SETTINGS[setting]


def gaussian_matrix(m, n, seed):
    """``(m, n)`` float32: i.i.d. N(0, 1/m) entries, columns scaled to unit norm."""
    A = tf.random.stateless_normal([m, n], as_seed(seed), stddev=1.0 / np.sqrt(m))
    return (A / tf.norm(A, axis=0, keepdims=True)).numpy().astype(np.float32)


def normalise_columns(D, what="the dictionary"):
    """``D`` with unit-norm columns (float32); ``D`` is checked first
    (:func:`check_float_array`: a NaN would reach the norms unseen)."""
    D = np.asarray(D)
    check_float_array(D, what)
    D = D.astype(np.float64)
    norms = np.linalg.norm(D, axis=0, keepdims=True)
    if np.any(norms == 0):
        raise UserError(f"{what} has an all-zero column (column "
                        f"{int(np.argmax(norms[0] == 0))}); cannot normalise it")
    return (D / norms).astype(np.float32)


def sample_codes(seed, batch, n, p=0.1):
    """Bernoulli(p) * N(0, 1) codes, ``(batch, n)`` float32 (stateless)."""
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(as_seed(seed), 2))
    support = tf.cast(tf.random.stateless_uniform([batch, n], s1) < p, tf.float32)
    return support * tf.random.stateless_normal([batch, n], s2)


def add_noise(clean, seed, snr_db):
    """Per-sample noise: ``sigma = std(clean_row) * 10^(-snr/20)``."""
    if snr_db is None:
        return clean
    std = tf.math.reduce_std(clean, axis=1, keepdims=True)
    sigma = std * 10.0 ** (-float(snr_db) / 20.0)
    return clean + sigma * tf.random.stateless_normal(tf.shape(clean), as_seed(seed))


def sample_measurements(A, seed, batch, p=0.1, snr_db=None):
    """Fresh ``(y, x)`` for a fixed ``A`` (usable inside ``tf.function``)."""
    A = tf.convert_to_tensor(A, tf.float32)
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(as_seed(seed), 2))
    # the dynamic width: under ``reduce_retracing`` a second size of A makes the static
    # shape (None, None)
    x = sample_codes(s1, batch, tf.shape(A)[1], p)
    y = add_noise(tf.matmul(x, A, transpose_b=True), s2, snr_db)
    return y, x


_sample_fn = tf.function(sample_measurements, reduce_retracing=True)


def make_split(A, seed, num, p=0.1, snr_db=None):
    """``(num, m + n)`` float32 rows ``[y | x]``, generated in chunks (``seed``: an int)."""
    rows = []
    for start in range(0, num, _CHUNK):
        size = min(_CHUNK, num - start)
        chunk_seed = tf.constant([int(seed) & 0x7FFFFFFF, start // _CHUNK + 1], tf.int32)
        y, x = _sample_fn(A, chunk_seed, size, p, snr_db)
        rows.append(np.concatenate([y.numpy(), x.numpy()], axis=1))
    return np.concatenate(rows, axis=0).astype(np.float32)


def _resolve_sizes(config, m, n, num_train, num_val, num_test):
    sizes = {}
    for name, value in (("m", m), ("n", n), ("num_train", num_train), ("num_val", num_val),
                        ("num_test", num_test)):
        value = config[name] if value is None else value
        require_positive_int(value, f"--{name}")
        sizes[name] = value
    return sizes


def generate_bytes(sizes, compute_W=True):
    """``{part: bytes}`` that :func:`generate` holds at most for ``sizes`` (m, n, num_*):
    ``A`` (float32, with TensorFlow's temporaries), ALISTA's ``W`` (float64 ``A`` copies and
    the ``n x n`` Gram matrices of its solver and check) and the largest split (its
    ``(num, m + n)`` rows and the chunks they are made of)."""
    m, n = sizes["m"], sizes["n"]
    largest = max(sizes["num_train"], sizes["num_val"], sizes["num_test"])
    return {"A": 4 * 4 * m * n,
            "W": 8 * (3 * n * n + 4 * m * n) if compute_W else 0,
            "largest split": 2 * 4 * largest * (m + n)}


def check_memory(sizes, compute_W, flag_text):
    """Refuses sizes whose data cannot fit in this machine's memory, before any work
    (:func:`open_l2o_tf.memory.check_fits`)."""
    from open_l2o_tf import memory  # pylint: disable=import-outside-toplevel
    return memory.check_fits(flag_text, generate_bytes(sizes, compute_W))


def generate(setting, out_dir, *, m=None, n=None, num_train=None, num_val=None,
             num_test=None, seed=0, dictionary=None, image_dir=None, compute_W=True,
             dictionary_iterations=None, progress=print, request=None, test_seed=None):
    """Generates one data directory; returns the ``meta`` dict written to ``meta.json``.

    Args:
      setting: one of :data:`SETTINGS`.
      out_dir: output directory (created).
      m, n, num_train, num_val, num_test: override the setting's paper sizes.
      seed: seed of A and of the three splits (independent draws).
      test_seed: draws the test split from this seed instead (A, W and the train/val
        splits stay those of ``seed``: a new test draw for models tied to A); None or
        ``seed``: the files of ``seed`` alone, to the byte.
      dictionary: for ``coherent``: a ``.npy`` (m, n) dictionary to use as A.
      image_dir: for ``coherent`` without ``dictionary``: a folder of natural images to
        learn the dictionary from (see :mod:`open_l2o_tf.data.dictionary`).
      compute_W: also write the ALISTA weight ``W.npy``.
      progress: a ``print``-like function for one line per stage (None: silent).
      request: recorded as ``meta["request"]`` (run.make_data: the command's values, so a
        re-run can tell its own data from another's).
    """
    config = check_setting(setting)
    sizes = _resolve_sizes(config, m, n, num_train, num_val, num_test)
    given = {"m": m, "n": n, "num_train": num_train, "num_val": num_val, "num_test": num_test}
    check_memory(sizes, compute_W, " ".join(f"--{k}={v}" for k, v in given.items()
                                            if v is not None) or f"setting {setting}")
    say = progress or (lambda *a, **k: None)
    start = time.time()
    timings = {}
    source = "gaussian N(0,1/m), unit-norm columns"
    if config["source"] == "dictionary":
        if dictionary is not None:
            if not os.path.exists(dictionary):
                raise UserError(f"--dictionary file {dictionary} does not exist")
            A = normalise_columns(_load_npy(dictionary, "--dictionary"),
                                  f"--dictionary {dictionary}")
            if A.shape != (sizes["m"], sizes["n"]):
                if m is None and n is None:
                    sizes["m"], sizes["n"] = A.shape
                else:
                    raise UserError(f"--dictionary {dictionary} has shape {A.shape}, but "
                                    f"--m/--n ask for ({sizes['m']}, {sizes['n']})")
            source = f"dictionary file {os.path.abspath(dictionary)}"
        else:
            from open_l2o_tf.data import dictionary as dictionary_lib  # pylint: disable=import-outside-toplevel
            if image_dir is None:
                raise UserError("setting 'coherent' needs --dictionary=FILE.npy or "
                                "--image_dir=DIR of natural images (e.g. BSDS500)")
            say(f"[make_data] learning a {sizes['m']}x{sizes['n']} dictionary from "
                f"{image_dir}")
            t0 = time.time()
            A, info = dictionary_lib.dictionary_from_images(
                image_dir, sizes["m"], sizes["n"], seed=seed,
                iterations=dictionary_iterations, progress=say)
            timings["dictionary_seconds"] = round(time.time() - t0, 2)
            source = (f"dictionary learned from {os.path.abspath(image_dir)} "
                      f"({info['num_patches']} patches {info['patch']}x{info['patch']}, "
                      f"{info['iterations']} block proximal gradient iterations)")
    else:
        A = gaussian_matrix(sizes["m"], sizes["n"], [seed & 0x7FFFFFFF, 0])
    olog.ensure_dir(os.path.abspath(out_dir))
    # everything goes into a hidden temporary folder inside out_dir, moved into place at
    # the end (meta.json last): a failed or interrupted run leaves nothing that looks like
    # data
    staging = tempfile.mkdtemp(prefix=".tmp-make_data-", dir=out_dir)
    try:
        meta = _generate_into(staging, A, setting, config, sizes, seed, source, timings,
                              compute_W, say, start, request, test_seed)
        names = sorted(os.listdir(staging))
        for name in sorted(names, key=lambda n: n == "meta.json"):
            os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
        if "W.npy" not in names and os.path.exists(os.path.join(out_dir, "W.npy")):
            os.remove(os.path.join(out_dir, "W.npy"))     # another data set's W
    except olog.WriteError as err:      # name the file as the user knows it
        raise olog.WriteError(err.errno, err.strerror, os.path.join(
            out_dir, os.path.basename(err.filename or ""))) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return meta


def _generate_into(out_dir, A, setting, config, sizes, seed, source, timings, compute_W,
                   say, start, request=None, test_seed=None):
    olog.atomic_save_npy(os.path.join(out_dir, "A.npy"), A)
    W_info = None
    if compute_W:
        from open_l2o_tf.data import alista_weight  # pylint: disable=import-outside-toplevel
        t0 = time.time()
        W = alista_weight.analytic_weight(A)
        olog.atomic_save_npy(os.path.join(out_dir, "W.npy"), W)
        diag_err, off = alista_weight.check_weight(W, A)
        W_info = {"max_diag_error": diag_err, "max_offdiag": off}
        timings["W_seconds"] = round(time.time() - t0, 2)
        say(f"[make_data] W.npy: max|diag(W^T A)-1|={diag_err:.1e} max|offdiag|={off:.3f} "
            f"({timings['W_seconds']} s)")
    for index, split in enumerate(("train", "val", "test")):
        num = sizes[f"num_{split}"]
        t0 = time.time()
        draw = seed if split != "test" or test_seed is None else test_seed
        rows = make_split(A, (int(draw) * 7919 + 1000 + index) & 0x7FFFFFFF, num, config["p"],
                          config["snr_db"])
        olog.atomic_save_npy(os.path.join(out_dir, f"{split}_data.npy"), rows)
        say(f"[make_data] {split}_data.npy {rows.shape} ({time.time() - t0:.1f} s)")
    from open_l2o_tf.data.dictionary import mutual_coherence  # pylint: disable=import-outside-toplevel
    meta = {"setting": setting, "m": sizes["m"], "n": sizes["n"],
            "num_train": sizes["num_train"], "num_val": sizes["num_val"],
            "num_test": sizes["num_test"], "sparsity": config["p"],
            "snr_db": config["snr_db"], "lam": config["lam"], "seed": seed,
            "source_of_A": source, "mutual_coherence": mutual_coherence(A),
            "W": W_info, "seconds": round(time.time() - start, 2), **timings}
    if test_seed is not None and int(test_seed) != int(seed):
        meta["test_seed"] = int(test_seed)
    if request is not None:
        meta["request"] = dict(request)
    olog.atomic_write_json(os.path.join(out_dir, "meta.json"), meta)
    return meta


def _load_npy(path, what):
    with open(path, "rb") as handle:
        head = handle.read(6)
    if head != b"\x93NUMPY":
        raise UserError(f"{what} {path} is not a .npy file (it starts with {head!r}, a .npy "
                        "file with b'\\x93NUMPY'); expected a 2-D float array as written by "
                        "python -m run.make_data")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:  # pylint: disable=broad-except
        raise UserError(f"{what} {path} is not a readable .npy file "
                        f"({type(err).__name__}: {str(err).splitlines()[0][:80]})") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise UserError(f"{what} {path} must hold a 2-D array, got shape "
                        f"{getattr(array, 'shape', None)}")
    check_float_array(array, f"{what} {path}")
    return array


def check_float_array(array, what):
    """``array`` is a non-empty array of finite real floats, else one :class:`UserError`
    naming ``what`` and what was found (dtype, emptiness, the first NaN/Inf)."""
    if array.dtype.kind != "f":
        raise UserError(f"{what} holds {array.dtype} values, expected floating-point "
                        "numbers (float32/float64) as written by python -m run.make_data")
    if array.size == 0:
        raise UserError(f"{what} is empty (shape {array.shape}); expected at least one row "
                        "and column")
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)
        where = tuple(int(i) for i in bad[0])
        kind = "NaN" if np.isnan(array[where]) else "Inf"
        raise UserError(f"{what} holds {len(bad)} non-finite value(s) (first: {kind} at "
                        f"index {where}); expected finite numbers")
    if array.dtype.itemsize > 4:     # the data is used as float32: no value may overflow it
        big = np.abs(array) > np.finfo(np.float32).max
        if big.any():
            bad = np.argwhere(big)
            where = tuple(int(i) for i in bad[0])
            raise UserError(f"{what} holds {len(bad)} value(s) beyond float32's range (first: "
                            f"{float(array[where]):.3g} at index {where}); the data is used as "
                            "float32")


def load(data_dir, split="test"):
    """Reads ``split`` of a data directory as ``SparseData(y, x, A, W, meta)`` (float32)."""
    hint = "make it with: python -m run.make_data --setting=SETTING --out=" + str(data_dir)
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise UserError(f"data directory {data_dir} is a file, expected a directory written "
                        f"by run.make_data; {hint}")
    if not os.path.isdir(data_dir):
        raise UserError(f"data directory {data_dir} does not exist; {hint}")
    a_path = os.path.join(data_dir, "A.npy")
    if not os.path.exists(a_path):
        raise UserError(f"{a_path} is missing; {hint}")
    A = _load_npy(a_path, "file").astype(np.float32)
    m, n = A.shape
    path = split if split.endswith(".npy") else f"{split}_data.npy"
    path = path if os.path.isabs(path) else os.path.join(data_dir, path)
    if not os.path.exists(path):
        raise UserError(f"{path} is missing; {hint}")
    rows = _load_npy(path, "file")
    if rows.shape[1] != m + n:
        raise UserError(f"{path} has rows of width {rows.shape[1]}, expected m + n = "
                        f"{m + n} for A.npy of shape {A.shape}")
    rows = rows.astype(np.float32)
    w_path = os.path.join(data_dir, "W.npy")
    W = None
    if os.path.exists(w_path):
        W = _load_npy(w_path, "file").astype(np.float32)
        if W.shape != A.shape:
            raise UserError(f"{w_path} has shape {W.shape}, expected {A.shape} like A.npy")
    meta = olog.read_json(os.path.join(data_dir, "meta.json"), default={},
                          expect={"setting": str, "m": int, "n": int,
                                  "lam": (int, float, type(None))}) or {}
    for key, size in (("m", m), ("n", n)):
        if key in meta and meta[key] != size:
            raise UserError(f"{os.path.join(data_dir, 'meta.json')} says {key}={meta[key]}, "
                            f"but {a_path} has shape {A.shape}; the directory mixes two data "
                            f"sets: {hint}")
    return SparseData(rows[:, :m], rows[:, m:], A, W, meta)

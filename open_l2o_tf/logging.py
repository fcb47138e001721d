"""Atomic result files, TensorBoard scalars and compact progress lines.

Everything a long run writes goes through here so that an interrupted run never leaves a
half-written file behind: :func:`atomic_write_json` and :func:`atomic_save_npy` write to a
temporary file in the same directory and ``os.replace`` it over the target.
"""
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

RESULT_KEYS = ("test", "method", "setting", "preset", "metric", "curve", "final", "paper",
               "train_seconds", "train_steps", "config")


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "numpy"):
        return _json_default(value.numpy())
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean_floats(value):
    """Replaces NaN/Inf by None so the file stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_floats(v) for v in value]
    return value


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class WriteError(OSError):
    """An ``OSError`` while writing ``filename`` (full disk, no permission, read-only file
    system, a vanished directory): the command lines print it as one ``error:`` line."""


GUARDED_DIRS = set()     # absolute workdirs of the running command: never recreated


def guard_directory(path):
    """Marks ``path`` (a running command's workdir) as one the writes here never recreate:
    once it is deleted, every write under it is an error."""
    GUARDED_DIRS.add(os.path.abspath(path))


def ensure_dir(directory):
    """Creates ``directory``; one under a guarded workdir deleted while the command runs
    is an error (``FileNotFoundError``): it is never silently recreated."""
    if os.path.isdir(directory):
        return
    for guarded in GUARDED_DIRS:
        if (directory == guarded or directory.startswith(guarded + os.sep)) \
                and not os.path.isdir(guarded):
            raise FileNotFoundError(2, "the workdir was deleted during the run", directory)
    os.makedirs(directory, exist_ok=True)


def _atomic_write(path, write_fn, mode):
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        ensure_dir(directory)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        os.chmod(tmp, 0o666 & ~_umask())     # mkstemp makes 0600; respect the umask
        with os.fdopen(fd, mode) as handle:
            write_fn(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(err.errno, err.strerror or str(err), path) from None
        raise


def atomic_write_json(path, obj):
    """Writes ``obj`` as indented JSON to ``path`` atomically (NaN/Inf become null)."""
    text = json.dumps(_clean_floats(json.loads(json.dumps(obj, default=_json_default))),
                      indent=1)
    _atomic_write(path, lambda h: h.write(text + "\n"), "w")


def atomic_write_text(path, text):
    """Writes ``text`` to ``path`` atomically."""
    _atomic_write(path, lambda h: h.write(text), "w")


def atomic_save_npy(path, array):
    """``np.save`` to ``path`` atomically."""
    _atomic_write(path, lambda h: np.save(h, array), "wb")


def atomic_save_npz(path, arrays, progress=None):
    """``np.savez`` of ``arrays`` to ``path`` atomically; ``progress`` (a JSON-able dict),
    when given, goes in as the string array ``progress`` (the meta-trainers' checkpoints:
    weights and counters in one file, so a kill never mixes two generations)."""
    if progress is not None:
        arrays = dict(arrays, progress=np.array(json.dumps(progress, default=_json_default)))
    _atomic_write(path, lambda h: np.savez(h, **arrays), "wb")


def history_from_json(history, series):
    """A meta-trainer's history as written by :func:`atomic_save_npz`'s JSON: the lists
    named in ``series`` as floats (None -> NaN), ``eval`` as ``(episode, score)`` tuples,
    ``skipped`` as strings."""
    nan_or = lambda v: float("nan") if v is None else float(v)  # noqa: E731
    out = {name: [nan_or(v) for v in history.get(name, [])] for name in series}
    out["eval"] = [(int(e), nan_or(v)) for e, v in history.get("eval", [])]
    out["skipped"] = [str(m) for m in history.get("skipped", [])]
    return out


def read_json(path, default=None, expect=None):
    """Reads a JSON file, or returns ``default`` when it does not exist.

    A file that is not JSON (or not a JSON object when ``expect`` is given) is a
    :class:`~open_l2o_tf.errors.UserError` naming it; ``expect`` maps keys to the type(s)
    their values must have when present (e.g. ``{"layer": int}``).
    """
    from open_l2o_tf.errors import UserError  # pylint: disable=import-outside-toplevel
    if not os.path.exists(path):
        return default
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, expected a JSON file")
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is corrupt: not JSON ({str(err)[:60]}); delete it (or its "
                        "folder) to start over") from None
    if expect is not None:
        if not isinstance(value, dict):
            raise UserError(f"{path} holds a JSON {type(value).__name__}, expected an object; "
                            "delete it (or its folder) to start over")
        for key, types in expect.items():
            if key in value and not (isinstance(value[key], types)
                                     and not (isinstance(value[key], bool)
                                              and bool not in _as_tuple(types))):
                raise UserError(f"{path}: {key!r} is {type(value[key]).__name__} "
                                f"{value[key]!r:.40}, expected {_type_names(types)}; delete "
                                "it (or its folder) to start over")
    return value


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


def _type_names(types):
    return " or ".join("null" if t is type(None) else t.__name__ for t in _as_tuple(types))


def make_result(test, method, setting, preset, metric, curve, paper=None,
                train_seconds=0.0, train_steps=0, config=None, **extra):
    """Builds one ``results.json`` record: ``test``, ``method``, ``setting``, ``preset``,
    ``metric``, ``curve`` (floats), ``final`` (``curve[-1]``, None for an empty curve),
    ``paper`` (the paper's value or None), ``train_seconds``, ``train_steps``, ``config``
    (the run's flags) and the command's own keys (``extra``)."""
    curve = [float(v) for v in np.asarray(curve, dtype=np.float64).reshape(-1)]
    record = {
        "test": test, "method": method, "setting": setting, "preset": preset,
        "metric": metric, "curve": curve, "final": curve[-1] if curve else None,
        "paper": paper, "train_seconds": float(train_seconds),
        "train_steps": int(train_steps), "config": dict(config or {}),
    }
    record.update(extra)
    return record


class TensorBoard:
    """A thin scalar writer over ``tf.summary``; a no-op when ``logdir`` is None."""

    def __init__(self, logdir):
        self.logdir = logdir
        self._writer = None

    def scalar(self, name, value, step):
        if self.logdir is None:
            return
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.logdir)
        with self._writer.as_default():
            tf.summary.scalar(name, float(value), step=int(step))

    def scalars(self, values, step, prefix=""):
        for name, value in values.items():
            self.scalar(prefix + name, value, step)

    def flush(self):
        if self._writer is not None:
            self._writer.flush()


class Progress:
    """Compact progress lines: ``[tag] k/total key=value ... (elapsed, eta)``.

    Prints at most once every ``min_interval`` seconds unless ``force`` is given, so hot
    loops can call it freely.
    """

    def __init__(self, tag, total=None, stream=None, min_interval=2.0):
        self.tag = tag
        self.total = total
        self.stream = stream or sys.stdout
        self.min_interval = min_interval
        self.start = time.time()
        self._last = 0.0

    def update(self, done, force=False, **values):
        now = time.time()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        elapsed = now - self.start
        parts = [f"[{self.tag}]"]
        if self.total:
            parts.append(f"{done}/{self.total}")
            if done:
                parts.append(f"eta {elapsed / done * (self.total - done):.0f}s")
        else:
            parts.append(str(done))
        for key, value in values.items():
            parts.append(f"{key}={value:.4g}" if isinstance(value, float) else
                         f"{key}={value}")
        parts.append(f"({elapsed:.0f}s)")
        print(" ".join(parts), file=self.stream, flush=True)

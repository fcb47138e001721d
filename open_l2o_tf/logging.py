"""Atomic result files, TensorBoard scalars, histograms and hyperparameters, and compact
progress lines.

Everything a long run writes goes through here so that an interrupted run never leaves a
half-written file behind: :func:`atomic_write_json`, :func:`atomic_save_npy`,
:func:`atomic_write_with` (any writer of a file object) and :func:`atomic_save_files` (a
checkpoint folder) write to a temporary file (folder) in the same directory and
``os.replace`` it over the target.  A write that fails (full disk, file-size limit, no
permission, read-only file system, a vanished directory) removes its temporary file and
raises :class:`WriteError` naming the target; :class:`TensorBoard` turns TensorFlow's
event-writer errors into the same :class:`WriteError`.
"""
import errno as errno_codes
import json
import math
import os
import re
import shutil
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


def write_error(err, path):
    """``err`` (an ``OSError``) as a :class:`WriteError` naming ``path``."""
    if isinstance(err, WriteError):
        return err
    return WriteError(err.errno, err.strerror or str(err), path)


def _atomic_write(path, write_fn, mode, suffix=""):
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        ensure_dir(directory)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
        os.chmod(tmp, 0o666 & ~_umask())     # mkstemp makes 0600; respect the umask
        with os.fdopen(fd, mode) as handle:
            write_fn(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise write_error(err, path) from None
        raise


def atomic_write_with(path, write_fn, binary=True):
    """Writes ``path`` atomically with ``write_fn(handle)`` (an open file of the temporary
    file; e.g. ``lambda h: fig.savefig(h, format="png")``)."""
    _atomic_write(path, write_fn, "wb" if binary else "w")


def atomic_write_file(path, save_fn):
    """Writes ``path`` atomically with ``save_fn(tmp_path)``, for writers that take a file
    name (e.g. ``keras.Model.save``, which wants a ``.keras`` name): the temporary name
    ends like ``path``."""
    suffix = os.path.splitext(path)[1]
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        ensure_dir(directory)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        save_fn(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise write_error(err, path) from None
        raise


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save_files(folder, writers):
    """Writes the folder ``folder`` atomically: ``writers`` maps each file name to a
    ``write_fn(handle)`` (binary); they are written into ``.tmp-NAME`` beside it, synced,
    and the folder is renamed into place (an older ``folder`` is replaced).  On failure the
    temporary folder is removed and a :class:`WriteError` names the file being written;
    the parent is never created under a guarded workdir that was deleted."""
    folder = os.path.abspath(folder)
    parent = os.path.dirname(folder)
    tmp = os.path.join(parent, ".tmp-" + os.path.basename(folder))
    target = folder
    try:
        ensure_dir(parent)
        shutil.rmtree(tmp, ignore_errors=True)     # left by a killed run
        os.mkdir(tmp, 0o777)
        for name, write_fn in writers.items():
            target = os.path.join(folder, name)
            with open(os.path.join(tmp, name), "wb") as handle:
                write_fn(handle)
                handle.flush()
                os.fsync(handle.fileno())
        target = folder
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise write_error(err, target) from None
        raise


def atomic_write_json(path, obj):
    """Writes ``obj`` as indented JSON to ``path`` atomically (NaN/Inf become null)."""
    text = json.dumps(_clean_floats(json.loads(json.dumps(obj, default=_json_default))),
                      indent=1)
    _atomic_write(path, lambda h: h.write(text + "\n"), "w")


def atomic_write_text(path, text):
    """Writes ``text`` to ``path`` atomically."""
    _atomic_write(path, lambda h: h.write(text), "w")


class _Chunked:
    """A file object numpy does not recognise as a real file: ``np.save`` then writes
    through :meth:`write` in chunks instead of ``ndarray.tofile``, whose short write on a
    full disk is an ``OSError`` without errno ("N requested and M written"); Python's own
    write raises the kernel's errno (ENOSPC, EFBIG, ...)."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        return self.handle.write(data)


def atomic_save_npy(path, array):
    """``np.save`` to ``path`` atomically."""
    _atomic_write(path, lambda h: np.save(_Chunked(h), array), "wb")


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


def _errno_of(text):
    """The errno whose ``strerror`` text ends a TensorFlow file error's message (e.g.
    ``...; No space left on device``), or 0."""
    best, code = "", 0
    for number in errno_codes.errorcode:
        message = os.strerror(number)
        if message in text and len(message) > len(best):
            best, code = message, number
    return code


def _io_errors(tf):
    """TensorFlow's error classes of a failed file operation."""
    e = tf.errors
    return (e.ResourceExhaustedError, e.OutOfRangeError, e.PermissionDeniedError,
            e.NotFoundError, e.FailedPreconditionError, e.DataLossError, e.UnknownError)


_EVENT_FILE = re.compile(r"(\S*events\.out\.tfevents\.[^\s;]+)")


class TensorBoard:
    """A thin scalar writer over ``tf.summary``; a no-op when ``logdir`` is None.

    Every ``scalar`` is flushed to the event file (``tf.summary``'s ``as_default`` does it
    on exit), so nothing is left for the writer's silent flush at exit; a failed write
    (TensorFlow's ``ResourceExhaustedError``, ``OutOfRangeError``, ...) or an event folder
    deleted during the run is a :class:`WriteError` naming the event file; the folder is
    never recreated under a guarded workdir (:func:`guard_directory`)."""

    _OPEN = {}       # absolute logdir -> the writer a command opened on it (:meth:`for_dir`)

    def __init__(self, logdir):
        self.logdir = logdir
        self._writer = None
        self._events = None      # the event file's path, once it exists
        self._hparams_written = False
        if logdir is not None:
            TensorBoard._OPEN[os.path.abspath(logdir)] = self

    @classmethod
    def for_dir(cls, logdir):
        """The writer already opened on ``logdir`` in this process (the command's own), else
        a new one: results and hyperparameters go into the command's event file."""
        found = cls._OPEN.get(os.path.abspath(logdir))
        return found if found is not None else cls(logdir)

    def _event_file(self):
        import glob  # pylint: disable=import-outside-toplevel
        if self._events is None:
            mine = sorted(glob.glob(os.path.join(glob.escape(self.logdir),
                                                 f"events.out.tfevents.*.{os.getpid()}.*")))
            self._events = mine[-1] if mine else None
        return self._events or self.logdir

    def _checked(self, fn):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        if self._writer is not None and not os.path.isdir(self.logdir):
            guarded = any(self.logdir.startswith(g + os.sep) and not os.path.isdir(g)
                          for g in GUARDED_DIRS)
            raise WriteError(errno_codes.ENOENT, "the workdir was deleted during the run"
                             if guarded else "its folder was deleted during the run",
                             self._event_file())
        try:
            return fn()
        except tf.errors.OpError as err:
            text = str(getattr(err, "message", err))
            code = _errno_of(text)
            if not code and not isinstance(err, _io_errors(tf)):
                raise       # not a failed write (a bug): keep TensorFlow's own error
            found = _EVENT_FILE.search(text)
            path = found.group(1) if found else self._event_file()
            reason = os.strerror(code) if code else text.strip().splitlines()[0][-120:]
            raise WriteError(code or errno_codes.EIO, reason, path) from None

    def _open(self):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        if self._writer is None:
            self.logdir = os.path.abspath(self.logdir)
            try:
                ensure_dir(self.logdir)
            except OSError as err:
                raise write_error(err, self.logdir) from None
            self._writer = self._checked(lambda: tf.summary.create_file_writer(self.logdir))
            self._events = None
            self._event_file()
        return tf

    def scalar(self, name, value, step):
        if self.logdir is None:
            return
        tf = self._open()

        def write():
            with self._writer.as_default():
                tf.summary.scalar(name, float(value), step=int(step))
        self._checked(write)

    def histogram(self, name, values, step, buckets=30):
        """A histogram of ``values`` (any shape; NaN/Inf left out) at ``step``."""
        if self.logdir is None:
            return
        tf = self._open()
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        values = values[np.isfinite(values)]

        def write():
            with self._writer.as_default():
                tf.summary.histogram(name, values, step=int(step), buckets=buckets)
        self._checked(write)

    def hparams(self, values, metrics=()):
        """Logs the run's settings ``values`` (a dict: flag name -> value) for TensorBoard's
        HParams dashboard, once per writer: numbers stay numbers, bools bools, strings
        strings; a list becomes its comma-joined string and None (a flag left unset) is
        left out.  ``metrics``: the scalar tags the dashboard shows as the run's results
        (e.g. ``final/loss``); they go, with the settings, into the experiment config, so
        a folder of runs (``tensorboard --logdir FOLDER``) is one table."""
        if self.logdir is None or self._hparams_written:
            return
        tf = self._open()
        from tensorboard.plugins.hparams import api as hp  # pylint: disable=import-outside-toplevel
        typed = hparam_values(values)
        config_hparams = [hp.HParam(name) for name in sorted(typed)]
        config_metrics = [hp.Metric(tag) for tag in metrics]

        def write():
            with self._writer.as_default():
                hp.hparams_config(hparams=config_hparams, metrics=config_metrics)
                hp.hparams(typed)
        self._checked(write)
        self._hparams_written = True

    def scalars(self, values, step, prefix=""):
        for name, value in values.items():
            self.scalar(prefix + name, value, step)

    def flush(self):
        if self._writer is not None:
            self._checked(self._writer.flush)

    def close(self):
        """Flushes and closes the event file (a later ``scalar`` opens a new one)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._checked(writer.close)
            self._events = None


def hparam_values(values):
    """``values`` as TensorBoard hyperparameters: bool, int, float and str kept as they are,
    a list or tuple joined by commas, None left out, anything else as its ``str``."""
    out = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, (bool, int, float, str)):
            out[str(name)] = value.item() if isinstance(value, np.generic) else value
        elif isinstance(value, (np.integer, np.floating, np.bool_)):
            out[str(name)] = value.item()
        elif isinstance(value, (list, tuple)):
            out[str(name)] = ",".join(str(v) for v in value)
        else:
            out[str(name)] = str(value)
    return out


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

"""The workdir and the run's identity: one writer per workdir (an OS-level lock) and
``WORKDIR/run.json``.

Every command that writes a workdir calls :func:`prepare_workdir` before any work: the
workdir must be a writable directory, and ``WORKDIR/run.json`` records the run's identity
(the command and every flag that can change the numbers, plus e.g. the model class and
config).  Re-running in a workdir that holds a checkpoint or results of a run with another
identity is refused in one line naming the differing flags (``--workdir``, ``--out``,
``--mnist_dir`` and similar flags may differ); so is a checkpoint written by another run
than the one ``run.json`` records (``ckpt/IDENTITY``).
"""
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

from open_l2o_tf import logging as olog
from open_l2o_tf import position, tb_hparams
from open_l2o_tf.errors import UserError
from .shared_flags import flag_values_dict

# flags that cannot change a run's numbers (where it is written, where the same data lives)
IDENTITY_IGNORED = {"workdir", "out", "mnist_dir", "data_root", "only", "dry_run",
                    "report_only", "run_timeout", "import",
                    # results do not depend on the replica count: a run may resume under
                    # another strategy
                    "strategy", "cpu_replicas",
                    # a budget, not a setting: a meta-training run resumes from its checkpoint
                    # and is continued (or finished early) by changing it
                    "meta_episodes",
                    # Safe-L2O options only change the test-phase comparison, which a
                    # re-run redoes: a trained workdir can be re-tested with other ones
                    "safeguard", "safeguard_rule", "safeguard_delta", "safeguard_param",
                    "safeguard_track", "safeguard_energy", "safeguard_fallback",
                    "safeguard_lr", "safeguard_iterations", "safeguard_lam",
                    "safeguard_shadow"}
RUN_FILE = "run.json"


def _check_writable_dir(path, flag):
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path} is a file, expected a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise UserError(f"{flag} {path} cannot be created ({err.strerror})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise UserError(f"{flag} {path} is not writable ({err.strerror})") from None


LOCK_FILE = ".lock"
_LOCKS = {}                       # real path of a locked workdir -> the open lock file


def lock_workdir(workdir, flag="--workdir"):
    """One writer per workdir: takes an exclusive ``fcntl.flock`` on ``WORKDIR/.lock``
    (held until the process exits, however it exits) and records this PID in it.  A
    workdir locked by another process is one :class:`UserError` naming that PID; nothing
    in it is touched.  Under ``--strategy=multi_worker`` a non-chief writes into a private
    directory, so only the chief locks ``--workdir``."""
    import fcntl  # pylint: disable=import-outside-toplevel
    real = os.path.realpath(workdir)
    path = os.path.join(real, LOCK_FILE)
    held = _LOCKS.get(real)
    if held is not None:
        try:
            if os.fstat(held).st_ino == os.stat(path).st_ino:
                return
        except OSError:
            pass
        os.close(_LOCKS.pop(real))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise UserError(f"{flag} {workdir}: cannot create its lock file {path} "
                        f"({err.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise UserError(f"{flag} {workdir} is in use by PID {pid} (another command is "
                        f"writing there); wait for it to finish, or use another {flag}") \
            from None
    mine = f"{os.getpid()}\n".encode()
    if os.pread(fd, 32, 0) != mine:
        os.ftruncate(fd, 0)
        os.pwrite(fd, mine, 0)
    _LOCKS[real] = fd
    olog.guard_directory(real)
    if os.path.abspath(workdir) != real:
        olog.guard_directory(workdir)


def release_workdir_locks():
    """Releases the locks of :func:`lock_workdir` (the process's exit does it too)."""
    while _LOCKS:
        os.close(_LOCKS.popitem()[1])
    olog.GUARDED_DIRS.clear()


def check_workdir(workdir, flag="--workdir"):
    """``workdir`` (and its ``tb/`` and ``ckpt/`` when present) is a writable directory;
    creates it and locks it (:func:`lock_workdir`).  Called before any work, so a bad or
    busy workdir costs nothing."""
    _check_writable_dir(workdir, flag)
    lock_workdir(workdir, flag)
    for sub in ("tb", "ckpt"):
        path = os.path.join(workdir, sub)
        if os.path.exists(path):
            _check_writable_dir(path, f"{flag} subfolder")
    return workdir


def check_writable_file(path, flag):
    """``path`` can be written as a file: not a directory, its folder writable."""
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a directory, expected a file name")
    _check_writable_dir(os.path.dirname(os.path.abspath(path)), f"{flag} folder of")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path} is not writable")
    return path


NPY_MAGIC = b"\x93NUMPY"


def check_load_flag(load, name):
    """Checks ``--load`` for ``--optimizer=name`` before any work: refused for a classic
    optimizer, the file must exist, and a learned optimizer's file must hold that kind.
    Returns None without ``load``, ``"learned"`` for a checked learned-optimizer file,
    ``"model"`` for an unrolled model (its file is checked by the caller)."""
    from open_l2o_tf import registry  # pylint: disable=import-outside-toplevel
    if load is None:
        return None
    kind = registry.kind_of(name, ("classic", "learned", "model"))
    if kind == "classic":
        raise UserError(f"--load does not apply to --optimizer={name} (a classic "
                        "optimizer has nothing to load)")
    if kind == "learned" and not os.path.isfile(load):
        from model_free.weights import scale_original  # pylint: disable=import-outside-toplevel
        if scale_original.is_checkpoint(load):   # an original L2O-Scale TF1 checkpoint
            from model_free.weights import pretrained  # pylint: disable=import-outside-toplevel
            pretrained.check_kind(load, name)
            return "learned"
    if not os.path.isfile(load):
        raise UserError(f"--load file {load} "
                        f"{'is a directory' if os.path.isdir(load) else 'does not exist'}")
    if kind == "learned":
        from model_free.weights import pretrained  # pylint: disable=import-outside-toplevel
        pretrained.check_kind(load, name)
        return "learned"
    return "model"


def check_data_dir(data_dir, flag="--data_dir", splits=("train", "val", "test")):
    """A data directory of run.make_data, checked without reading the arrays (and without
    TensorFlow): a directory, ``A.npy`` and the splits present and .npy files,
    ``meta.json`` JSON.  The full checks happen when the data is loaded."""
    hint = f"make one with python -m run.make_data --setting=SETTING --out={data_dir}"
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise UserError(f"{flag} {data_dir} is a file, expected a directory; {hint}")
    if not os.path.isdir(data_dir):
        raise UserError(f"{flag} {data_dir} does not exist; {hint}")
    for name in ["A.npy"] + [f"{split}_data.npy" for split in splits]:
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            raise UserError(f"{path} is missing; {hint}")
        with open(path, "rb") as handle:
            head = handle.read(6)
        if head != NPY_MAGIC:
            raise UserError(f"file {path} is not a .npy file (it starts with {head!r}, a .npy "
                            "file with b'\\x93NUMPY'); expected a 2-D float array as written "
                            "by python -m run.make_data")
    olog.read_json(os.path.join(data_dir, "meta.json"), default={},
                   expect={"setting": str, "m": int, "n": int,
                           "lam": (int, float, type(None))})
    return data_dir


def _exact_json(value):
    """``value`` with NaN/Inf floats as the strings ``"nan"``/``"inf"``/``"-inf"``: the JSON
    writer would store them as null, which reads back as another value (None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _exact_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_exact_json(v) for v in value]
    return value


DATA_ARRAYS = ("A.npy", "W.npy", "train_data.npy", "val_data.npy", "test_data.npy")


def data_digest(data_dir):
    """``sha256:...`` of a run.make_data directory: the bytes of its arrays and its
    ``meta.json`` (without the timings, which differ between identical runs).  Part of a
    run's identity, so a run does not resume on data that changed under it."""
    import hashlib  # pylint: disable=import-outside-toplevel
    digest = hashlib.sha256()
    for name in DATA_ARRAYS:
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            continue
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    meta = olog.read_json(os.path.join(data_dir, "meta.json"), default={})
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if not k.endswith("seconds")}
    digest.update(b"meta.json\0" + json.dumps(meta, sort_keys=True, default=str).encode())
    return "sha256:" + digest.hexdigest()


def data_digest_of_file(path):
    """``sha256:...`` of one file's bytes."""
    import hashlib  # pylint: disable=import-outside-toplevel
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def data_identity(data_dir):
    """``{"data": digest}`` of ``data_dir`` for a run's identity (``{}`` without one)."""
    return {} if data_dir is None else {"data": data_digest(data_dir)}


DATA_ENV = "OPEN_L2O_DATA_DIR"
BSDS500_HINT = ("download BSDS500 (BSR_bsds500.tgz from the Berkeley Segmentation Dataset "
                "page) and put its BSDS500/data/images folders in $OPEN_L2O_DATA_DIR/bsds500")


def find_image_dir(image_dir, flag="--image_dir", other="--dictionary=D.npy"):
    """The folder of natural images (BSDS500) of a coherent dictionary: ``image_dir``
    (the flag) when given, else ``$OPEN_L2O_DATA_DIR/bsds500``, else
    ``../shared/data/bsds500``; checked (a folder holding images) before any work, else one
    :class:`UserError` saying what to download and where."""
    from open_l2o_tf.data.images import list_images  # pylint: disable=import-outside-toplevel
    if image_dir is not None:
        if not os.path.isdir(image_dir):
            raise UserError(f"{flag} {image_dir} is not a directory; give a folder of natural "
                            f"images or {other}")
        list_images(image_dir)
        return image_dir
    tried = []
    if os.environ.get(DATA_ENV):
        tried.append(os.path.join(os.environ[DATA_ENV], "bsds500"))
    tried.append(os.path.join("..", "shared", "data", "bsds500"))
    for candidate in tried:
        if os.path.isdir(candidate):
            list_images(candidate)
            return candidate
    raise UserError(f"no natural images for the coherent dictionary: {flag} not given and "
                    f"{' and '.join(tried)} {'do' if len(tried) > 1 else 'does'} not exist"
                    f"{'' if os.environ.get(DATA_ENV) else ' ($OPEN_L2O_DATA_DIR is not set)'}"
                    f"; {BSDS500_HINT}, or give {flag}=DIR or {other}")


def run_identity(extra=None, ignore=()):
    """The command and its flags that can change the numbers (+ ``extra``), JSON-clean and
    stored exactly: what ``run.json`` holds reads back equal to it."""
    command = os.path.splitext(os.path.basename(sys.argv[0]))[0] if sys.argv else "?"
    values = {k: v for k, v in flag_values_dict().items()
              if k not in IDENTITY_IGNORED and k not in ignore}
    identity = {"command": command, "flags": values, "extra": dict(extra or {})}
    return _exact_json(json.loads(json.dumps(identity, default=str)))


CKPT_IDENTITY = "IDENTITY"   # in WORKDIR/ckpt: the identity (JSON) of the run that wrote it


def _checkpoint_files(workdir):
    ckpt = os.path.join(workdir, "ckpt")
    if not os.path.isdir(ckpt):
        return []
    return sorted(name for name in os.listdir(ckpt) if name != CKPT_IDENTITY)


def _state_dirs(workdir, state_dirs):
    return [f"{name}/" for name in state_dirs if os.path.isdir(os.path.join(workdir, name))
            and os.listdir(os.path.join(workdir, name))]


def _has_state(workdir, state_dirs=()):
    return (os.path.exists(os.path.join(workdir, "results.json"))
            or bool(_checkpoint_files(workdir)) or bool(_state_dirs(workdir, state_dirs)))


def _state_files(workdir, state_dirs=()):
    found = ["results.json"] if os.path.exists(os.path.join(workdir, "results.json")) else []
    found += _state_dirs(workdir, state_dirs)
    names = _checkpoint_files(workdir)
    if names:
        found.append("a checkpoint ckpt/" + (", ".join(names[:4])
                                            + (", ..." if len(names) > 4 else "")))
    return found


def _differences(old, new):
    out = []
    if old.get("command") != new["command"]:
        out.append(f"command {old.get('command')} there, {new['command']} now")
    for section, prefix in (("flags", "--"), ("extra", "")):
        before, now = old.get(section) or {}, new[section]
        for key in sorted(set(before) | set(now)):
            if section == "extra" and key == "data":
                continue    # :func:`_check_same_data`
            if before.get(key) != now.get(key):
                out.append(f"{prefix}{key}={before.get(key)!r} there, {now.get(key)!r} now")
    return out


def _check_same_data(workdir, old, new):
    """The data (``extra["data"]``, :func:`data_digest`) a run started on must be the data it
    resumes on; a run recorded before the digest was part of the identity is accepted."""
    was, now = (old.get("extra") or {}).get("data"), new["extra"].get("data")
    if was is None or now is None or was == now:
        return
    where = new["flags"].get("data_dir")
    raise UserError(f"--data_dir {where} changed since the run in --workdir {workdir} "
                    f"started on it (data digest {was[7:19]} there, {now[7:19]} now: made "
                    f"again by run.make_data?); restore that data, or use another --workdir "
                    f"for the new data")


def check_run_identity(workdir, extra=None, ignore=(), state_dirs=()):
    """Refuses to reuse ``workdir`` when it holds a checkpoint or results (or a non-empty
    folder of ``state_dirs``) of a run with another identity (:func:`run_identity`, without
    the flags of ``ignore``); otherwise records this run's identity."""
    lock_workdir(workdir)
    path = os.path.join(workdir, RUN_FILE)
    identity = run_identity(extra, ignore)
    if not os.path.exists(path) and _has_state(workdir, state_dirs):
        raise UserError(f"--workdir {workdir} holds "
                        f"{', '.join(_state_files(workdir, state_dirs))} but "
                        f"no {RUN_FILE} (the settings of the run that wrote them); refusing "
                        f"to resume a run of unknown settings: use another --workdir or "
                        f"delete {workdir}")
    if os.path.exists(path) and _has_state(workdir, state_dirs):
        try:
            old = olog.read_json(path)
        except UserError:
            old = None
        if not isinstance(old, dict):
            raise UserError(f"{path} is corrupt (expected the JSON identity of the run); "
                            f"delete {workdir} or use another --workdir")
        _check_same_data(workdir, old, identity)
        diff = _differences(old, identity)
        if diff:
            raise UserError(f"--workdir {workdir} holds a run with other settings ("
                            + "; ".join(diff) + "); use another --workdir or the same flags")
    _check_checkpoint_identity(workdir, identity)
    olog.atomic_write_json(path, identity)
    return identity


def _check_checkpoint_identity(workdir, identity):
    """The checkpoint's own record of the run that wrote it (``ckpt/IDENTITY``, written
    before its first checkpoint) must be this run's; a checkpoint brought from another
    workdir (another model or config) is refused.  A checkpoint without the record (older
    than it) is accepted."""
    stamp = os.path.join(workdir, "ckpt", CKPT_IDENTITY)
    if _checkpoint_files(workdir):
        if not os.path.exists(stamp):
            return
        try:
            written_by = olog.read_json(stamp)
        except UserError:
            written_by = None
        diff = _differences(written_by, identity) if isinstance(written_by, dict) else \
            ["its record ckpt/IDENTITY is corrupt"]
        if diff:
            raise UserError(f"--workdir {workdir}: its checkpoint ckpt/ was written by another "
                            f"run than {RUN_FILE} records (" + "; ".join(diff) + "); delete "
                            f"{os.path.join(workdir, 'ckpt')} or use another --workdir")
        return
    os.makedirs(os.path.dirname(stamp), exist_ok=True)
    olog.atomic_write_json(stamp, identity)


def prepare_workdir(workdir, extra=None, flag="--workdir", ignore=(), state_dirs=()):
    """:func:`check_workdir` + :func:`check_run_identity`: call before any work."""
    check_workdir(workdir, flag)
    check_run_identity(workdir, extra, ignore, state_dirs)
    return workdir


def write_results(workdir, record):
    """Atomically writes ``workdir/results.json`` with one record, and logs it to
    ``workdir/tb`` for TensorBoard's HParams dashboard: the run's flags (``config``) as
    hyperparameters and its figures as metrics (:func:`open_l2o_tf.tb_hparams.log_results`),
    so a folder of runs is one table."""
    path = os.path.join(workdir, "results.json")
    olog.atomic_write_json(path, record)
    tb_hparams.log_results(os.path.join(workdir, "tb"), record)
    return path


TEST_RUNS = "test_runs.npz"   # in WORKDIR/ckpt: the test runs finished so far


def read_test_runs(workdir):
    """``(curves, seconds)`` of ``WORKDIR/ckpt/test_runs.npz`` (empty lists without it); a
    truncated or foreign file is one :class:`UserError` saying to delete it.  The commands
    call it in their checks before any work, and :func:`resumable_runs` on resuming."""
    path = os.path.join(workdir, "ckpt", TEST_RUNS)
    if not os.path.exists(path):
        return [], []
    try:
        with np.load(path, allow_pickle=False) as saved:
            curves = list(saved["curves"])
            seconds = [float(x) for x in saved["seconds"]]
        if len(curves) != len(seconds) or any(np.ndim(c) != 1 for c in curves):
            raise ValueError("curves and seconds do not match")
    except Exception as err:  # pylint: disable=broad-except  (zip, zlib, EOF, ...)
        reason = (str(err).splitlines() or [""])[0][:80]
        raise UserError(f"{path} is not a readable record of finished test runs "
                        f"({type(err).__name__}: {reason}); delete it to redo them") from None
    return curves, seconds


def resumable_runs(workdir, runs, run_one, progress=None):
    """Calls ``run_one(k)`` (a 1-D curve) for ``k`` in ``range(runs)`` and returns the curves
    stacked, ``(runs, steps)``, with each run's seconds.  Each finished run is kept in
    ``WORKDIR/ckpt/test_runs.npz`` (written atomically), so an interrupted command re-run in
    the same workdir starts at the first unfinished run and loses only the one it was in
    (a Fig. 8 ConvNet run of 10,000 steps takes 5-10 minutes here).  ``progress(k + 1,
    curve)`` after each run, also for the runs found done."""
    path = os.path.join(workdir, "ckpt", TEST_RUNS)
    curves, seconds = [], []
    if os.path.exists(path):
        curves, seconds = read_test_runs(workdir)
        curves, seconds = curves[:runs], seconds[:runs]
        print(f"[resume] {len(curves)} of {runs} test runs already done ({path})", flush=True)
        for k, curve in enumerate(curves):
            if progress:
                progress(k + 1, curve)
    for k in range(len(curves), runs):
        position.set(f"test run {k + 1}/{runs}")
        start = time.time()
        curve = np.asarray(run_one(k)).reshape(-1)   # --steps is in the run's identity
        curves.append(curve)
        seconds.append(time.time() - start)
        olog.ensure_dir(os.path.dirname(path))
        olog.atomic_save_npz(path, {"curves": np.stack(curves),
                                    "seconds": np.asarray(seconds)})
        if progress:
            progress(k + 1, curve)
    position.clear()
    return np.stack(curves), seconds

"""Faults injected into one case of ``tests/cli_batch.py`` (a command run in-process).

A case's ``"fault"`` is a dict:

* ``{"kind": "sigint", "at": "scalar", "nth": K}``: SIGINT to this process at the K-th
  TensorBoard scalar (mid-stage), as Ctrl-C would deliver it; ``"sigterm"`` the same with
  SIGTERM (``kill PID``);
* ``{"kind": "delete_workdir", "at": "progress", "nth": K}``: the workdir is deleted right
  after the K-th ``ckpt/progress.json`` is written (the run goes on training);
* ``{"kind": "enospc", "at": "savez", "nth": K}``: the K-th ``numpy.savez`` (a
  checkpoint's weights) writes its data, then fails as a full disk does (ENOSPC);
* ``{"kind": "chmod", "path": P, "at": "progress", "nth": K}``: the folder P of the
  workdir (``"."``: the workdir itself) is made read-only (0555) right after the K-th
  ``progress.json``; a real EACCES only if this process lacks CAP_DAC_OVERRIDE (root
  ignores permission bits: the test runs the batch under ``setpriv`` without it);
* ``{"kind": "readonly", "at": "progress", "nth": K}``: a read-only bind mount of the
  workdir over itself right after the K-th ``progress.json`` (a real EROFS for every later
  open under the workdir; the test runs the batch in a private mount namespace,
  ``unshare -m``); undone after the case;
* ``{"kind": "watch"}``: no fault of its own (the workdir lies on a small tmpfs mounted by
  the test: a real ENOSPC), only the snapshots below;
* ``{"kind": "fsize", "limit": N}``: ``RLIMIT_FSIZE`` of N bytes for the case (the kernel
  fails a write past N bytes of any file with EFBIG; the hard limit stays, so the soft
  limit is restored after the case).

Before every write of the run (atomic writes, checkpoint weights, TensorBoard scalars) the
workdir's files (all but ``tb/``, ``.lock`` and temporaries) are hashed: ``snapshot`` in
the result is the state just before the last write, which the state afterwards must equal
when that write failed."""
import hashlib
import os
import resource
import shutil
import signal
import subprocess

import numpy as np


def hash_tree(root):
    out = {}
    for folder, dirs, files in os.walk(root):
        # the event files grow by design; temporaries are the test's own check
        dirs[:] = [d for d in dirs if not ((folder == root and d == "tb")
                                           or d.startswith(".tmp"))]
        for name in files:
            if name == ".lock" or name.startswith(".tmp"):
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return out


class Injector:
    """Installs a case's fault and the write snapshots; :meth:`remove` undoes both."""

    def __init__(self, fault, workdir):
        from open_l2o_tf import logging as olog  # pylint: disable=import-outside-toplevel
        self.fault, self.workdir, self.olog = fault, workdir, olog
        self.counts = {"scalar": 0, "progress": 0, "savez": 0}
        self.snapshot = None
        self.undo = []
        self.saved = {"write": getattr(olog, "_atomic_write"),
                      "scalar": olog.TensorBoard.scalar, "savez": np.savez}
        self.saved_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        injector = self

        def atomic_write(path, *args, **kwargs):
            injector.before_write()
            result = injector.saved["write"](path, *args, **kwargs)
            if os.path.basename(path) == "progress.json":
                injector.event("progress")
            return result

        def scalar(tb, *args, **kwargs):
            if tb.logdir is not None:
                injector.before_write()
                injector.event("scalar")
            return injector.saved["scalar"](tb, *args, **kwargs)

        def savez(file, *args, **kwargs):
            injector.before_write()
            injector.saved["savez"](file, *args, **kwargs)
            if injector.event("savez") == "enospc":
                raise OSError(28, os.strerror(28))

        setattr(olog, "_atomic_write", atomic_write)
        olog.TensorBoard.scalar = scalar
        np.savez = savez
        if fault and fault["kind"] == "fsize":
            resource.setrlimit(resource.RLIMIT_FSIZE, (fault["limit"], self.saved_limit[1]))

    def before_write(self):
        if os.path.isdir(self.workdir):
            self.snapshot = hash_tree(self.workdir)

    def event(self, at):
        self.counts[at] += 1
        fault = self.fault
        if not fault or fault.get("at") != at or self.counts[at] != fault["nth"]:
            return None
        if fault["kind"] in ("sigint", "sigterm"):
            os.kill(os.getpid(), signal.SIGINT if fault["kind"] == "sigint" else signal.SIGTERM)
        elif fault["kind"] == "chmod":
            target = os.path.join(self.workdir, fault["path"])
            os.chmod(target, 0o555)
            self.undo.append(lambda: os.chmod(target, 0o755))
        elif fault["kind"] == "readonly":
            for cmd in (["mount", "--bind", self.workdir, self.workdir],
                        ["mount", "-o", "remount,bind,ro", self.workdir]):
                subprocess.run(cmd, check=True)
            self.undo.append(lambda: subprocess.run(["umount", self.workdir], check=True))
        elif fault["kind"] == "delete_workdir":
            shutil.rmtree(self.workdir)
        return fault["kind"]

    def remove(self):
        for undo in reversed(self.undo):
            undo()
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved_limit)
        setattr(self.olog, "_atomic_write", self.saved["write"])
        self.olog.TensorBoard.scalar = self.saved["scalar"]
        np.savez = self.saved["savez"]

"""Runs many command lines of ONE ``run`` module in this one process (one TensorFlow
import), as ``python -m run.X ARGS`` would, and writes a JSON list of results.

    python tests/cli_batch.py run.lasso CASES.json RESULTS.json

``CASES.json``: a list of ``{"args": [...], "watch": [paths]}``; each result holds the exit
status, the captured stderr and stdout, and the paths under ``watch`` whose bytes changed
during the case.  Used by ``tests/test_bad_inputs.py``.

A case may also hold ``"prepare": {"files": {PATH: TEXT}}``: the case's ``validate`` (the
checks before any work, which record the run's identity ``run.json`` in a fresh workdir)
runs first, then the files are written (TEXT, or ``"hex:..."`` for bytes), so a broken
checkpoint is tested behind a valid ``run.json``; and ``"fault"`` with ``"workdir"``: a fault injected during the case
(``tests/faults_inject.py``), the result then holds ``snapshot`` (the workdir's hashes just
before the last write) and ``after`` (its hashes afterwards, None when it is gone) and ``temporaries`` (``.tmp*`` left in it;
read in this process, which may see a tmpfs the test cannot).
"""
import hashlib
import importlib
import json
import os
import sys
import tempfile


def _snapshot(paths):
    out = {}
    for root in paths:
        if os.path.isfile(root):
            out[root] = hashlib.sha256(open(root, "rb").read()).hexdigest()
            continue
        for folder, _, files in os.walk(root):
            for name in files:
                if name == ".lock":     # the workdir lock's own file (docs/reliability.md)
                    continue
                path = os.path.join(folder, name)
                with open(path, "rb") as handle:
                    out[path] = hashlib.sha256(handle.read()).hexdigest()
    return out


def _capture(fn):
    """Runs ``fn()`` with file descriptors 1 and 2 redirected; returns (value, out, err)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            value = fn()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        return value, out.read().decode("utf-8", "replace"), err.read().decode("utf-8",
                                                                             "replace")


def _prepare(common, module, case):
    """Runs the case's ``validate`` alone (a fresh workdir gets its ``run.json``), then
    writes ``case["prepare"]["files"]``."""
    code, _, err = _capture(lambda: common.run_in_process(
        lambda argv: 0, [module.__file__] + case["args"], getattr(module, "validate", None),
        needs_tf=False))
    if code != 0:
        raise RuntimeError(f"prepare {case['args']}: exit {code}: {err[-800:]}")
    for path, text in case["prepare"].get("files", {}).items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if text.startswith("hex:"):           # bytes, e.g. a truncated .npz
            with open(path, "wb") as handle:
                handle.write(bytes.fromhex(text[4:]))
            continue
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)


def main():
    module_name, cases_path, results_path = sys.argv[1:4]
    from run import common  # pylint: disable=import-outside-toplevel
    module = importlib.import_module(module_name)
    cases = json.load(open(cases_path, encoding="utf-8"))
    results = []
    for case in cases:
        if case.get("prepare"):
            _prepare(common, module, case)
        before = _snapshot(case.get("watch", []))
        sys.argv = [module.__file__] + case["args"]
        injector = None
        if case.get("fault"):
            import signal  # pylint: disable=import-outside-toplevel
            from tests import faults_inject  # pylint: disable=import-outside-toplevel
            # a background job inherits SIGINT ignored; a terminal delivers Ctrl-C
            signal.signal(signal.SIGINT, signal.default_int_handler)
            injector = faults_inject.Injector(case["fault"], case["workdir"])

        def one():
            import traceback  # pylint: disable=import-outside-toplevel
            try:
                return common.run_in_process(module.main, sys.argv,
                                             getattr(module, "validate", None))
            except BaseException:  # pylint: disable=broad-except
                traceback.print_exc()
                return 1
        try:
            code, out, err = _capture(one)
        finally:
            if injector is not None:
                injector.remove()
        after = _snapshot(case.get("watch", []))
        changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
        result = {"args": case["args"], "code": code, "stdout": out, "stderr": err,
                  "changed": changed}
        if injector is not None:
            from tests.faults_inject import hash_tree  # pylint: disable=import-outside-toplevel
            result["snapshot"] = injector.snapshot
            result["after"] = (hash_tree(case["workdir"]) if os.path.isdir(case["workdir"])
                               else None)
            result["temporaries"] = sorted(
                os.path.join(folder, name)
                for folder, dirs, files in os.walk(case["workdir"])
                for name in dirs + files if name.startswith(".tmp"))
        results.append(result)
    with open(results_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()

"""Checks that every command accepts the registry names it serves, in ONE process with one
TensorFlow import: each command module is imported in a forked child (a command defines
its flags on import), which parses ``--model`` / ``--optimizer`` for each name and runs the
command's ``validate()`` (no training), as ``python -m run.X`` would.

    python tests/cli_accept.py WORKDIR RESULTS.json [MODULE ...]

``MODULE``: modules to import first (their registry entries then count as in-tree).
``RESULTS.json``: ``{command: {name: [exit status, stderr lines]}}``.
"""
import importlib
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAG_OF = {"sparse_recovery": "model"}


def _child(command, names, workdir, out_path):
    from run import common  # pylint: disable=import-outside-toplevel
    out = {}
    with tempfile.TemporaryFile() as err:
        os.dup2(err.fileno(), 2)
        module = importlib.import_module(f"run.{command}")
        for name in names:
            start = err.tell()
            argv = [module.__file__, f"--{FLAG_OF.get(command, 'optimizer')}={name}",
                    "--preset=quick", f"--workdir={os.path.join(workdir, command, name)}"]
            code = common.run_in_process(lambda argv: 0, argv, module.validate,
                                         needs_tf=False)
            sys.stderr.flush()
            err.seek(start)
            lines = err.read().decode("utf-8", "replace").splitlines()
            err.seek(0, 2)
            out[name] = [code, [l for l in lines if l.startswith(("error:", "Traceback"))]]
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(out, handle)


def main():
    workdir, results_path, modules = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import model_based  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import model_free  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import open_l2o_tf.classic  # noqa: F401  pylint: disable=import-outside-toplevel
    from open_l2o_tf import registry  # pylint: disable=import-outside-toplevel
    for module in modules:
        importlib.import_module(module)
    results = {}
    for command in registry.COMMANDS:
        names = registry.serving(command, ("classic", "model", "learned"))
        out_path = os.path.join(workdir, f"{command}.json")
        pid = os.fork()
        if pid == 0:
            try:
                _child(command, names, workdir, out_path)
            finally:
                os._exit(0)  # pylint: disable=protected-access
        os.waitpid(pid, 0)
        with open(out_path, encoding="utf-8") as handle:
            results[command] = json.load(handle)
    with open(results_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()

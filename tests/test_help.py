"""Help, flag mistakes and hints of every command, as an installed user meets them.

Every command registered in ``run/cli.py`` is run through the ``open-l2o`` dispatcher in a
fresh process: ``--help`` exits 0 and lists every flag the command parses (its own and the
shared ones) before TensorFlow is imported; a bad flag value is one ``error:`` line naming
the flag, exit 2, without TensorFlow; hints name the commands as ``open-l2o NAME``.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from run import cli, startup
from tests.conftest import shared_data

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# runs ``open-l2o ARGS`` (run.cli.main with argv[0] "open-l2o", as the console script) and
# writes, at exit, whether TensorFlow was imported and the flags the command defined
# (every flag not defined by absl itself)
DRIVER = textwrap.dedent("""
    import atexit, json, os, sys
    def _report():
        from absl import flags
        names = sorted({f.name for module, fl in flags.FLAGS.flags_by_module_dict().items()
                        if not str(module).startswith("absl") for f in fl})
        with open(os.environ["HELP_REPORT"], "w") as handle:
            json.dump({"tf": "tensorflow" in sys.modules, "flags": names}, handle)
    atexit.register(_report)
    from run import cli
    sys.exit(cli.main(["open-l2o"] + sys.argv[1:]))
""")

# command -> a bad flag value (a typo) and the flag its error line must name
BAD_VALUE = {
    "make_data": (["--setting=noiseles", "--out=o"], "--setting"),
    "sparse_recovery": (["--num_layers=0"], "--num_layers"),
    "lasso": (["--optimizer=fistaa"], "--optimizer"),
    "rastrigin": (["--n=0"], "--n"),
    "nn_training": (["--problem=mnist"], "--problem"),
    "minimax": (["--problem=sadle"], "--problem"),
    "ood": (["--iterations=-1"], "--iterations"),
    "perf": (["--what=everything"], "--what"),
    "benchmark": (["--suite=big"], "--suite"),
    "convert_original": (["--import=not a module"], "--import"),
    "reproduction": (["--status=nope"], "--status"),
    "pretrained": (["--runs=0"], "--runs"),
}

# the commands that imported TensorFlow before reading their flags: a mistake their
# validation (not the flag parser) finds, and the line's hint names "open-l2o NAME"
BAD_SETUP = {
    "sparse_recovery": (["--preset=paper", "--workdir=w"],
                        "--data_dir is required with --preset=paper; make one with "
                        "open-l2o make-data --setting=noiseless"),
    "lasso": (["--optimizer=fista", "--lr=0.1", "--workdir=w"], "--lr applies to"),
    "ood": (["--workdir=w"], "--load is required: a model.keras written by "
                             "open-l2o sparse-recovery"),
    "make_data": (["--setting=coherent", "--out=o"], "no natural images for the coherent dictionary"),
}


def _open_l2o(tmp_path, *args):
    """``open-l2o ARGS`` in ``tmp_path``: (process, report)."""
    report = tmp_path / "report.json"
    empty = tmp_path / "no_data"
    empty.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=ROOT, HELP_REPORT=str(report), CUDA_VISIBLE_DEVICES="",
               OPEN_L2O_DATA_DIR=str(empty))
    env.pop("OPEN_L2O_PROGRAM", None)
    proc = subprocess.run([sys.executable, "-c", DRIVER, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    with open(report, encoding="utf-8") as handle:
        return proc, json.load(handle)


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_help_lists_every_flag_and_a_bad_value_is_one_line_without_tensorflow(tmp_path,
                                                                              command):
    assert set(BAD_VALUE) == set(cli.COMMANDS)
    name = command.replace("_", "-")
    proc, report = _open_l2o(tmp_path, name, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not report["tf"], f"{name} --help imported TensorFlow"
    assert report["flags"] and "import" in report["flags"]
    missing = [flag for flag in report["flags"]
               if f"--{flag}:" not in proc.stdout and f"--[no]{flag}:" not in proc.stdout]
    assert not missing, f"{name} --help does not list {missing}"
    assert "--helpfull" in proc.stdout and "--flagfile" not in proc.stdout   # absl's own
    assert "python -m run." not in proc.stdout    # the usage lines as the user runs it

    args, flag = BAD_VALUE[command]
    proc, report = _open_l2o(tmp_path, name, *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], lines
    assert not report["tf"], f"{name} imported TensorFlow before reading {flag}"


@pytest.mark.parametrize("command", sorted(BAD_SETUP))
def test_a_setup_mistake_is_found_before_tensorflow_and_names_open_l2o(tmp_path, command):
    args, expected = BAD_SETUP[command]
    proc, report = _open_l2o(tmp_path, command.replace("_", "-"), *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert "python -m" not in lines[0]
    assert not report["tf"], f"{command} imported TensorFlow before checking its flags"


def test_hints_name_the_command_as_the_user_runs_it(monkeypatch):
    text = ("data directory d does not exist; make it with: python -m run.make_data "
            "--setting=SETTING --out=d (see run.json; a model.keras written by "
            "run.sparse_recovery)")
    monkeypatch.delenv(startup.PROGRAM_ENV, raising=False)
    assert startup.as_invoked(text) == text           # a checkout: python -m run.X
    monkeypatch.setenv(startup.PROGRAM_ENV, "open-l2o")
    assert startup.as_invoked(text) == (
        "data directory d does not exist; make it with: open-l2o make-data "
        "--setting=SETTING --out=d (see run.json; a model.keras written by "
        "open-l2o sparse-recovery)")


def test_import_finds_a_module_of_the_current_directory_under_the_installed_script(
        tmp_path):
    """The ``open-l2o`` console script does not put the current directory on sys.path
    (``python -m`` does): ``--import`` must find ``./my_rule.py`` all the same, as its
    error message says."""
    script = tmp_path / "bin" / "open-l2o"
    script.parent.mkdir()
    script.write_text("import sys\nfrom run.cli import main\nsys.exit(main())\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_rule.py").write_text(
        "from open_l2o_tf import registry\n"
        "registry.register('learned', 'my_rule', 'my_rule:Rule', interface='update')\n")
    env = dict(os.environ, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(script), "rastrigin", "--import=my_rule",
                           "--help"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "my_rule" in proc.stdout.split("--optimizer:", 1)[1].split("--", 1)[0]
    proc = subprocess.run([sys.executable, str(script), "rastrigin", "--import=not_here",
                           "--help"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --import=not_here: cannot import it "
                                  "(ModuleNotFoundError"), proc.stderr
    assert "current directory" in proc.stderr


def test_shared_data_honours_OPEN_L2O_DATA_DIR(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    monkeypatch.setenv("OPEN_L2O_DATA_DIR", str(tmp_path))
    assert shared_data() == str(tmp_path)
    assert shared_data("mnist") == str(tmp_path / "mnist")
    assert shared_data("original_optimizers") is None

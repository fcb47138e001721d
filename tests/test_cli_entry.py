"""The ``open-l2o`` dispatcher (run/cli.py): the same command modules and flags as
``python -m run.X``."""
import subprocess
import sys

from run import cli


def test_dispatcher_usage_and_unknown_command(capsys):
    assert cli.main(["open-l2o"]) == 2
    assert "sparse-recovery" in capsys.readouterr().out
    assert cli.main(["open-l2o", "lassoo"]) == 2
    assert "error: unknown command 'lassoo'" in capsys.readouterr().err


def test_dispatcher_runs_the_command_module_with_its_flags():
    # the command's own absl flags and its validation line, argv[0] set as python -m does
    proc = subprocess.run([sys.executable, "-m", "run.cli", "sparse-recovery", "--model=nope",
                           "--preset=quick"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert "--model=nope" in proc.stderr and "lista_cpss" in proc.stderr
    assert "Traceback" not in proc.stderr

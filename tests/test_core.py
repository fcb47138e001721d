"""Tests of the shared core: reference numbers, atomic result files, plots, the report."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from open_l2o_tf import logging as olog
from open_l2o_tf import plotting, reference
from open_l2o_tf.errors import UserError, require_positive_int

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reference_lookup_matches_paper_table():
    assert reference.lookup("sparse_recovery", "noiseless", "alista") == -78.0
    assert reference.lookup("sparse_recovery", "large", "lfista") == -14.5
    assert reference.lookup("lasso", "lasso_25x50", "l2o_rnnprop") == pytest.approx(5.5e-4)
    assert reference.lookup("rastrigin", 10, "oracle") == pytest.approx(19.6117)
    assert reference.lookup("rastrigin", "n2", "nag_ls") == pytest.approx(5.6)
    assert reference.lookup("nn_training", "mnist_conv", "sgd") == pytest.approx(0.1)
    assert reference.lookup("sparse_recovery", "noiseless", "tista") is None
    with pytest.raises(UserError, match="unknown test"):
        reference.lookup("nope", "x", "y")


def test_reference_compare_tolerances():
    row = reference.compare("sparse_recovery", "noiseless", "alista", -77.0)
    assert row["difference"] == pytest.approx(1.0) and row["within_tolerance"]
    row = reference.compare("sparse_recovery", "noiseless", "alista", -70.0)
    assert not row["within_tolerance"]
    row = reference.compare("lasso", "lasso_5x10", "fista", 5.5e-6)
    assert row["difference_kind"] == "decades" and row["within_tolerance"]
    assert row["difference"] == pytest.approx(np.log10(1.1))
    row = reference.compare("lasso", "lasso_5x10", "fista", 5e-5)
    assert row["difference"] == pytest.approx(1.0) and not row["within_tolerance"]


def test_atomic_json_replaces_nonfinite_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "r.json"
    olog.atomic_write_json(str(path), {"a": float("nan"), "b": [1.0, float("inf")],
                                       "c": np.float32(2.5), "d": np.arange(3)})
    data = json.loads(path.read_text())
    assert data == {"a": None, "b": [1.0, None], "c": 2.5, "d": [0, 1, 2]}
    assert os.listdir(path.parent) == ["r.json"]


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "r.json"
    olog.atomic_write_json(str(path), {"ok": 1})
    with pytest.raises(TypeError):
        olog.atomic_write_json(str(path), {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_make_result_schema():
    record = olog.make_result("lasso", "fista", "lasso_5x10", "quick", "relative_loss",
                              np.array([3.0, 2.0, 1e-5]), paper=5e-6, config={"x": 1})
    assert set(olog.RESULT_KEYS) <= set(record)
    assert record["final"] == pytest.approx(1e-5) and record["curve"][0] == 3.0
    assert record["train_steps"] == 0 and record["config"] == {"x": 1}


def test_require_positive_int_names_the_argument():
    assert require_positive_int(3, "--num_train") == 3
    for bad in (0, -5, 2.5, True):
        with pytest.raises(UserError, match="--num_train must be a positive integer"):
            require_positive_int(bad, "--num_train")


def _fake_records():
    sparse = [olog.make_result("sparse_recovery", m, "noiseless", "quick", "nmse_db",
                               np.linspace(-5, final, 8),
                               paper=reference.lookup("sparse_recovery", "noiseless", m))
              for m, final in [("alista", -40.0), ("lista", -20.0)]]
    lasso = [olog.make_result("lasso", "fista", "lasso_5x10", "quick", "relative_loss",
                              np.logspace(2, -5, 100), paper=5e-6)]
    return sparse + lasso


def test_plot_results_one_png_per_panel(tmp_path):
    paths = plotting.plot_results(_fake_records(), str(tmp_path))
    names = sorted(os.path.basename(p) for p in paths)
    assert names == ["fig5_sparse_recovery_noiseless.png", "fig6_lasso_lasso_5x10.png"]
    for path in paths:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_benchmark_report_only_builds_report(tmp_path):
    runs = tmp_path / "runs"
    for record in _fake_records()[:2]:
        run_dir = runs / f"sparse_noiseless_{record['method']}"
        olog.atomic_write_json(str(run_dir / "results.json"), record)
        olog.atomic_write_json(str(run_dir / "DONE"), {"seconds": 1})
    proc = subprocess.run(
        [sys.executable, "-m", "run.benchmark", "--suite=quick", f"--out={tmp_path}",
         "--report_only", "--only=sparse"], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "report.md").read_text()
    # 8 quick layers are not the paper's 16 at 256x512: no difference, the reason instead
    assert ("| noiseless | alista | 8 layers | -40 | -78 | not comparable: ran 8 layers; "
            "paper 256x512, 16 layers |") in report
    assert "`sparse_noiseless_lista_cpss`: not run" in report
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["method"] for r in results} == {"alista", "lista"}
    assert (tmp_path / "fig5_sparse_recovery_noiseless.png").exists()


def test_benchmark_bad_only_regex_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "run.benchmark", f"--out={tmp_path}", "--only=nomatch_xyz"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --only=")
    assert "Traceback" not in proc.stderr

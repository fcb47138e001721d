"""The benchmark's figures and report state what ran and compare with the paper only at the
paper's setting; a run whose results.json is missing or corrupt is a visible failure."""
import json
import os
import subprocess
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position

from open_l2o_tf import logging as olog  # noqa: E402
from open_l2o_tf import plotting, report, setups  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_SPARSE = {"m": 64, "n": 128, "layers": 8, "test_samples": 1024}
PAPER_SPARSE = {"m": 256, "n": 512, "layers": 16, "test_samples": 1024}


def _sparse(method, final, setup, preset="quick", layers=8, **kw):
    return olog.make_result("sparse_recovery", method, "noiseless", preset, "nmse_db",
                            np.linspace(-5, final, layers), train_steps=1000, setup=setup,
                            **kw)


def _nn(method, steps, preset="quick", train_steps=0):
    return olog.make_result("nn_training", method, "mnist_mlp_relu", preset, "loss",
                            np.logspace(0, -1, steps + 1), train_steps=train_steps,
                            setup={"iterations": steps, "runs": 2})


def _stars(ax):
    """``[(x, y)]`` of the hollow stars drawn on ``ax``."""
    return [(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.get_lines()
            if line.get_marker() == "*"]


def _panel(records, test, setting):
    fig, ax = plt.subplots()
    try:
        plotting.plot_panel(ax, records, test, setting)
        return ax.get_title(), _stars(ax), ax.get_ylabel()
    finally:
        plt.close(fig)


def test_titles_state_the_size_depth_and_horizon_that_ran(tmp_path):
    title, stars, _ = _panel([_sparse("alista", -34.0, QUICK_SPARSE)], "sparse_recovery",
                             "noiseless")
    assert title == "Noiseless, 64x128, 8 layers (quick)"      # not the paper's (256, 512)
    assert stars == []                                          # the paper's -78 is 16 layers
    partial = _sparse("lista", -20.0, dict(QUICK_SPARSE, layers=3), layers=3)
    assert _panel([_sparse("alista", -34.0, QUICK_SPARSE), partial], "sparse_recovery",
                  "noiseless")[0] == "Noiseless, 64x128, 3-8 layers (quick)"
    title, _, ylabel = _panel([_nn("adam", 500)], "nn_training", "mnist_mlp_relu")
    assert title == "MLP (MNIST, ReLU), 500 iterations (quick)"
    assert ylabel == "Training loss (mean of 2 runs)"
    # a record written without "setup": the size from its data folder's meta.json
    data = tmp_path / "data"
    olog.atomic_write_json(str(data / "meta.json"), {"m": 32, "n": 64})
    old = olog.make_result("sparse_recovery", "lista", "noiseless", "quick", "nmse_db",
                           np.linspace(-5, -20, 4), config={"data_dir": str(data)})
    assert _panel([old], "sparse_recovery", "noiseless")[0] == \
        "Noiseless, 32x64, 4 layers (quick)"


def test_paper_stars_only_at_the_papers_setting_and_its_iteration():
    _, stars, _ = _panel([_nn("adam", 500)], "nn_training", "mnist_mlp_relu")
    assert stars == []                      # paper's value is at step 10,000, not 500
    _, stars, _ = _panel([_nn("adam", 10000, preset="paper")], "nn_training",
                         "mnist_mlp_relu")
    assert stars == [(10000, 0.065)]
    # a trained method with the quick budget: no star even at the paper's horizon
    _, stars, _ = _panel([_nn("l2o_dm", 10000, train_steps=50)], "nn_training",
                         "mnist_mlp_relu")
    assert stars == []
    _, stars, _ = _panel([_sparse("alista", -70.0, PAPER_SPARSE, "paper", layers=16)],
                         "sparse_recovery", "noiseless")
    assert stars == [(16, -78.0)]
    caption = plotting.panel_caption("sparse_recovery",
                                     [_sparse("alista", -34.0, QUICK_SPARSE)])
    assert "no paper stars: the paper's values are for 256x512, 16 layers" in caption
    assert "not comparable (ran 64x128, 8 layers, quick training budget" in caption


def _report(tmp_path, records, failures=None, cells=None, broken=None):
    for record in records:
        record.setdefault("run", record["method"])
        record.setdefault("complete", True)
    statuses = {r["run"]: "done" for r in records}
    report.write_report(str(tmp_path), records, statuses, failures or {}, "quick", cells,
                        broken)
    return (tmp_path / "report.md").read_text()


def test_report_compares_only_at_the_papers_setting(tmp_path):
    text = _report(tmp_path, [_sparse("alista", -34.01, QUICK_SPARSE),
                              _sparse("lista", -37.0, PAPER_SPARSE, "paper", layers=16)])
    row = next(line for line in text.splitlines() if "| alista |" in line)
    assert "+43.99" not in row and "| -34.01 | -78 |" in row
    assert ("not comparable: ran 64x128, 8 layers, quick training budget; paper 256x512, "
            "16 layers, paper training budget") in row
    assert "| 64x128, 8 layers, quick training budget (1,000 steps) |" in row
    row = next(line for line in text.splitlines() if "| lista |" in line)
    assert "| -37 at layer 16 | -36 | -1 | yes |" in row


def test_report_values_tell_methods_apart(tmp_path):
    records = [olog.make_result("minimax", m, "rotated_saddle", "quick", "saddle_distance",
                                [1.0, v], setup={"half_steps": 400, "instances": 20,
                                                 "restarts": 2})
               for m, v in [("gda", 8.2e-5), ("adam_gda", 1.8e-3), ("twin_l2o", 5.7e-6)]]
    text = _report(tmp_path, records)
    for value in ("| 8.2e-05 |", "| 0.0018 |", "| 5.7e-06 |"):
        assert value in text
    assert "| 0.00 |" not in text
    assert "400 half-steps, 20 instances x 2 starts" in text
    assert setups.fmt(0.0018123456) == "0.001812" and setups.fmt(-34.0123) == "-34.01"


def _bench_dir(tmp_path):
    """A quick-suite OUT with one good run, one with a corrupt results.json, one finished
    whose results.json was deleted."""
    runs = tmp_path / "runs"
    good = _sparse("alista", -34.0, QUICK_SPARSE)
    olog.atomic_write_json(str(runs / "sparse_noiseless_alista" / "results.json"), good)
    for name in ("sparse_noiseless_alista", "sparse_noiseless_lista",
                 "sparse_noiseless_lista_cpss"):
        olog.atomic_write_json(str(runs / name / "DONE"), {"seconds": 1})
    (runs / "sparse_noiseless_lista" / "results.json").write_text('{"test": "sparse_re')
    return runs


def test_corrupt_or_missing_results_are_failed_rows(tmp_path):
    runs = _bench_dir(tmp_path)
    names = ["sparse_noiseless_alista", "sparse_noiseless_lista", "sparse_noiseless_lista_cpss",
             "sparse_noiseless_glista"]
    records, statuses, broken = report.collect(str(runs), names)
    assert [r["method"] for r in records] == ["alista"]
    assert "corrupt" in broken["sparse_noiseless_lista"]
    assert "finished, but its results.json is missing" in broken["sparse_noiseless_lista_cpss"]
    assert statuses["sparse_noiseless_glista"] == "not run"
    cells = {n: ("sparse_recovery", "noiseless", n[len("sparse_noiseless_"):]) for n in names}
    text = _report(tmp_path, records, cells=cells, broken=broken)
    assert "| noiseless | lista | – | – | – | – | – | – | FAILED: finished, but its results.json is " \
        "corrupt" in text
    assert "| noiseless | lista_cpss | – | – | – | – | – | – | FAILED: finished, but" in text
    # a rerun keeps the unreadable file aside and is no longer marked done
    report.set_aside(str(runs / "sparse_noiseless_lista"))
    assert not (runs / "sparse_noiseless_lista" / "DONE").exists()
    assert (runs / "sparse_noiseless_lista" / "results.json.corrupt").exists()
    assert report.results_problem(str(runs / "sparse_noiseless_alista")) is None


def test_report_only_exits_1_on_unusable_results(tmp_path):
    _bench_dir(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "run.benchmark", "--suite=quick", f"--out={tmp_path}",
         "--report_only", "--only=sparse_noiseless_"], cwd=ROOT,
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "FAILED sparse_noiseless_lista: finished, but its results.json is corrupt" \
        in proc.stderr
    assert "FAILED sparse_noiseless_lista_cpss: finished, but its results.json is missing" \
        in proc.stderr
    assert "Traceback" not in proc.stderr
    text = (tmp_path / "report.md").read_text()
    assert "| noiseless | lista_cpss | – |" in text and "| noiseless | lista | – |" in text
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in results] == ["alista"]
    assert results[0]["paper_comparison"]["comparable"] is False
    # the suite runs a finished run without usable results again (not "done earlier")
    proc = subprocess.run(
        [sys.executable, "-m", "run.benchmark", "--suite=quick", f"--out={tmp_path}",
         "--dry_run", "--only=sparse_noiseless_"], cwd=ROOT, capture_output=True,
        text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("sparse_noiseless_lista_cpss: finished earlier, but its results.json is "
            "missing; running it again") in proc.stdout
    assert "sparse_noiseless_alista: done earlier" in proc.stdout

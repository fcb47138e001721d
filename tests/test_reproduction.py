"""The reproduction record: docs/reproduction.md is what docs/reproduction.json renders,
every paper cell is there once with a valid status, and --add records a finished run."""
import json
import os

import pytest

from open_l2o_tf import reproduction
from tests.cli import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = os.path.join(ROOT, "docs", "reproduction.json")


def test_the_page_is_the_records_and_the_record_is_valid():
    record = reproduction.load(RECORD)
    assert reproduction.validate(record) == []
    with open(os.path.join(ROOT, "docs", "reproduction.md"), encoding="utf-8") as handle:
        assert handle.read() == reproduction.render(record)
    assert len(record["rows"]) == len(reproduction.cells()) == 82
    assert sum(reproduction.status_counts(record).values()) == 82


def test_validate_catches_a_missing_cell_a_false_within_and_unexplained_rows():
    record = reproduction.load(RECORD)
    broken = {"rows": [dict(r) for r in record["rows"][1:]]}
    assert any("appears 0 times" in p for p in reproduction.validate(broken))
    row = dict(reproduction.empty_row("6", "lasso_25x50", "fista"), ours=1.0,
               status="within")
    assert any("'within'" in p for p in reproduction.validate({"rows": [row]}))
    row = dict(row, ours=6.1e-5, status="outside-explained")
    assert any("without evidence" in p for p in reproduction.validate({"rows": [row]}))


def test_figure_8_is_within_only_on_the_last_100_step_mean():
    result = {"test": "nn_training", "setting": "mnist_mlp_relu", "method": "adam",
              "preset": "paper", "final": 0.065, "mean_last100": 0.2, "train_seconds": 1.0}
    assert reproduction.row_from_result(result)["status"] == "outside"
    result["mean_last100"] = 0.066
    assert reproduction.row_from_result(result)["status"] == "within"
    assert reproduction.row_from_result(result)["ours_detail"] == ""


def test_figure_8_row_says_each_runs_final_loss_and_the_test_time():
    result = {"test": "nn_training", "setting": "mnist_conv", "method": "adam",
              "preset": "paper", "final": 0.2, "mean_last100": 0.21, "curve": [2.3] * 101,
              "std_final": 0.1, "final_per_run": [0.1, 0.3], "eval_seconds": 1234.4}
    assert reproduction.row_from_result(result)["ours_detail"] == (
        "std over runs 0.1; per-run loss at step 100: 0.1000 0.3000; the 2 test runs took "
        "1,234 s")


def test_add_records_a_run_from_its_results_and_run_json(tmp_path):
    record_path = tmp_path / "rec.json"
    reproduction.save(str(record_path), reproduction.new_record())
    work = tmp_path / "w"
    work.mkdir()
    (work / "results.json").write_text(json.dumps({
        "test": "rastrigin", "method": "adam", "setting": "n10", "preset": "paper",
        "final": 52.05, "train_seconds": 0.0, "train_steps": 0}))
    (work / "run.json").write_text(json.dumps({
        "command": "rastrigin", "flags": {"optimizer": "adam", "n": 10, "lr": None,
                                          "workdir": str(work)}}))
    proc = run_cli("run.reproduction", f"--record={record_path}",
                   f"--add={work / 'results.json'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = reproduction.load(str(record_path))
    row = [r for r in record["rows"] if (r["figure"], r["setting"], r["method"]) ==
           ("7", "n10", "adam")]
    assert len(row) == 1 and row[0]["ours"] == pytest.approx(52.05)
    assert row[0]["status"] == "within" and row[0]["paper"] == 52
    assert row[0]["command"] == "python -m run.rastrigin --n=10 --optimizer=adam"
    assert row[0]["train_seconds"] == 0.0
    assert (tmp_path / "rec.md").read_text() == reproduction.render(record)
    again = run_cli("run.reproduction", f"--record={record_path}",
                    f"--add={work / 'results.json'}", "--train_seconds=1234.5")
    assert again.returncode == 0, again.stderr[-2000:]
    row = [r for r in reproduction.load(str(record_path))["rows"]
           if (r["figure"], r["setting"], r["method"]) == ("7", "n10", "adam")]
    assert len(row) == 1 and row[0]["train_seconds"] == 1234.5
    lone = run_cli("run.reproduction", f"--record={record_path}", "--train_seconds=5")
    assert lone.returncode == 2 and "go with --add" in lone.stderr
    bad = run_cli("run.reproduction", f"--record={record_path}", "--add=nope.json")
    assert bad.returncode == 2 and "error: --add nope.json does not exist" in bad.stderr

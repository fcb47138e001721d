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
    curves = reproduction.load_curves(RECORD)
    with open(os.path.join(ROOT, "docs", "reproduction.md"), encoding="utf-8") as handle:
        assert handle.read() == reproduction.render(record, reproduction.panels(record, curves))
    assert reproduction.stale_images(record, curves, RECORD) == []
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


def test_a_swarm_cell_records_the_original_quantity_with_ours_beside_it():
    """L2O-Swarm: the cell's value (and kept curve) is the released evaluation's quantity
    (``swarm_original_final``), ours is named in the detail."""
    result = {"test": "rastrigin", "setting": "n2", "method": "l2o_swarm", "preset": "paper",
              "final": 4.8160, "curve": [9.0, 4.8160], "swarm_original_final": 4.9627,
              "swarm_original_curve": [9.5, 4.9627], "swarm_original_quantity": "min over "
              "the 4 particles of the batch-mean loss", "train_seconds": 1.0}
    row = reproduction.row_from_result(result)
    assert row["ours"] == 4.9627 and "ours, the mean of each instance's best particle: " \
        "4.816" in row["ours_detail"] and "min over the 4 particles" in row["ours_detail"]
    assert reproduction.curve_from_result(result, "7")["mean"][-1] == pytest.approx(4.963)


def test_a_capped_or_unfinished_progressive_run_is_short_with_its_layer_and_rate():
    """A paper-preset Fig. 5 run with a cap on the epochs of a stage is short (never within,
    even at the paper's value) and says the cap, the stages it stopped and the last
    stage's validation improvement; an unfinished one says the layer it reached."""
    paper = reproduction.paper_cell("5", "noiseless", "alista")[1]
    capped = {"test": "sparse_recovery", "setting": "noiseless", "method": "alista",
              "preset": "paper", "final": paper, "curve": [paper] * 16, "layers": 16,
              "paper_layers": 16, "complete": True, "train_steps": 4000, "max_epochs": 15,
              "budget": "paper preset, at most 15 epochs a stage", "capped_stages": 7,
              "last_stage": [16, 3], "last_stage_stop": "cap",
              "last_val_improvement_per_epoch": 0.0123}
    row = reproduction.row_from_result(capped)
    assert row["status"] == "short"
    assert row["budget"] == "paper preset, at most 15 epochs a stage, 4,000 train steps"
    assert "7 stages stopped by the cap of 15 epochs" in row["ours_detail"]
    assert "layer 16 stage 3, stopped by cap): validation improving 0.0123" in \
        row["ours_detail"]
    older = {k: v for k, v in capped.items() if k not in ("max_epochs", "budget")}
    older["config"] = {"max_epochs": 15}      # a results.json written before the keys
    assert reproduction.row_from_result(older)["status"] == "short"
    assert reproduction.row_from_result(older)["budget"].startswith(
        "preset paper, at most 15 epochs a stage")
    unfinished = dict(capped, complete=False, layers=7, curve=[-20.0] * 7, final=-20.0,
                      max_epochs=None, budget="paper preset", capped_stages=0,
                      last_stage=[7, 3], last_stage_stop="patience")
    row = reproduction.row_from_result(unfinished)
    assert row["status"] == "short" and row["ours"] == -20.0
    assert row["ours_detail"].startswith("layer 7 of 16 reached (unfinished run)")
    assert "stopped by the cap" not in row["ours_detail"]
    with_curve = dict(unfinished, curve_at_layer_end=[-6.456, -11.06, -14.2])
    assert reproduction.row_from_result(with_curve)["ours_detail"].endswith(
        "layer-end test NMSE (dB), layers 1-3: -6.46 -11.06 -14.20")


def test_add_records_a_run_from_its_results_and_run_json(tmp_path):
    record_path = tmp_path / "rec.json"
    reproduction.save(str(record_path), reproduction.new_record())
    work = tmp_path / "w"
    work.mkdir()
    (work / "results.json").write_text(json.dumps({
        "test": "rastrigin", "method": "adam", "setting": "n10", "preset": "paper",
        "final": 52.05, "curve": [60.0, 52.05], "train_seconds": 0.0, "train_steps": 0}))
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
    curves = reproduction.load_curves(str(record_path))
    assert (tmp_path / "rec.md").read_text() == reproduction.render(
        record, reproduction.panels(record, curves))
    assert curves[("7", "n10", "adam")]["steps"] == [0, 1]      # the run's curve is kept
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


def _spread(figure="6", setting="lasso_5x10", method="gd", values=(1.0, 2.0, 3.0), **kw):
    values = list(values)
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    metric = reproduction.paper_cell(figure, setting, method)[0]
    spread = {"figure": figure, "setting": setting, "method": method, "metric": metric,
              "statistic": "R[1000] of one draw", "draw_kind": "run" if figure == "8"
              else "test_draw", "seeds": list(range(len(values))), "values": values,
              "mean": mean, "sd": sd, "command": "python -m run.lasso --seed={seed}",
              "trained": "none (classic)"}
    spread.update(kw)
    return spread


def test_the_rule_compares_the_papers_statistic_with_ours_like_with_like():
    absolute0 = {"kind": "absolute", "value": 0.0}
    # Figure 7: the paper's value is one draw's, so the spread is the sd over draws
    assert reproduction.spread_within(1.2, 0.5, 1.0, absolute0, "7") == (True, 0.7, 2.0)
    # Figure 8: a mean over 10 runs, so the spread is sd / sqrt(10): 2 x 0.316 = 0.632
    within, distance, half = reproduction.spread_within(1.2, 0.5, 1.0, absolute0, "8")
    assert not within and half == pytest.approx(2 / 10 ** 0.5)
    assert reproduction.spread_within(1.1, 0.5, 1.0, absolute0, "8")[0]
    # widened by the reading tolerance, relative to the paper's value
    relative = {"kind": "relative", "value": 0.15}
    assert reproduction.spread_within(1.0, 0.5, 0.2, relative, "6")[2] == pytest.approx(0.55)
    assert not reproduction.spread_within(1.0, 0.5, 0.2, dict(relative, value=0.05), "6")[0]


def test_a_spread_decides_the_status_and_the_tolerance_verdict_stays_beside_it():
    record = reproduction.new_record()
    row = [r for r in record["rows"] if (r["figure"], r["setting"], r["method"]) ==
           ("6", "lasso_5x10", "gd")][0]        # paper 100, tolerance 15 %
    row.update(ours=126.2, status="outside-explained", evidence="a rate other than the text's")
    reproduction.add_spread(record, _spread(values=(126.2, 120.0, 110.0, 95.0)))
    assert row["status"] == "within" and reproduction.tolerance_verdict(row) == "outside"
    assert reproduction.validate({"rows": [row]})[-1].endswith("(expected once)")
    assert not [p for p in reproduction.validate(record)]
    reproduction.add_spread(record, _spread(values=(126.2, 125.0, 127.0)))
    assert row["status"] == "outside-explained"     # the evidence it had still stands
    row["status"] = "within"
    assert any("'within' but the paper's" in p for p in reproduction.validate(record))
    short = [r for r in record["rows"] if (r["figure"], r["setting"], r["method"]) ==
             ("6", "lasso_5x10", "adam")][0]
    short.update(ours=0.08, status="short")
    reproduction.add_spread(record, _spread(method="adam", values=(0.07, 0.08, 0.09)))
    assert short["status"] == "short"           # within only at the paper's budget


def test_a_malformed_spread_file_is_told_apart():
    assert reproduction.check_spread(_spread()) == []
    assert any("missing key(s) sd" in p for p in reproduction.check_spread(
        {k: v for k, v in _spread().items() if k != "sd"}))
    assert any("sd 9 is not the sd" in p for p in reproduction.check_spread(_spread(sd=9)))
    assert any("3 values for 2 seeds" in p
               for p in reproduction.check_spread(_spread(seeds=[0, 1])))
    assert any("not Figure 6's" in p
               for p in reproduction.check_spread(_spread(draw_kind="run")))
    assert any("not a cell" in p for p in reproduction.check_spread(_spread(method="x")))
    assert any("finite" in p for p in reproduction.check_spread(
        _spread(values=[1.0, float("nan"), 2.0])))
    assert any("one length" in p for p in reproduction.check_spread(
        _spread(curve_steps=[0, 1], curve_mean=[1.0], curve_sd=[0.0])))


def test_a_runs_curve_is_kept_thinned_with_figure_5_layers_from_0():
    result = {"test": "lasso", "setting": "lasso_5x10", "method": "gd",
              "curve": [100.0 / (k + 1) for k in range(1001)]}
    curve = reproduction.curve_from_result(result, "6")
    assert len(curve["steps"]) <= 200 and curve["steps"][0] == 0
    assert curve["steps"][-1] == 1000 and curve["mean"][-1] == pytest.approx(100 / 1001,
                                                                             rel=1e-3)
    layers = reproduction.curve_from_result(
        {"setting": "noisy", "method": "alista", "curve": [-5.0, -9.0]}, "5")
    assert layers["steps"] == [0, 1, 2] and layers["mean"] == [0.0, -5.0, -9.0]


def test_spread_adds_a_file_draws_its_panel_and_check_sees_stale_figures(tmp_path):
    record_path = tmp_path / "rec.json"
    reproduction.save(str(record_path), reproduction.new_record())
    good = tmp_path / "good.json"
    steps = [0, 10, 100, 1000]
    good.write_text(json.dumps(_spread(method="ista", values=(0.15, 0.16, 0.14),
                                       curve_steps=steps, curve_mean=[1.0, 0.5, 0.3, 0.15],
                                       curve_sd=[0.0, 0.01, 0.01, 0.01])))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_spread(sd=9)))
    proc = run_cli("run.reproduction", f"--record={record_path}", f"--spread={good}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = [r for r in reproduction.load(str(record_path))["rows"]
           if (r["figure"], r["setting"], r["method"]) == ("6", "lasso_5x10", "ista")][0]
    assert row["spread"]["values"] == [0.15, 0.16, 0.14] and "curve_mean" not in row["spread"]
    kept = json.loads((tmp_path / "record_curves" / "fig6_lasso_5x10_ista.json").read_text())
    assert kept["steps"] == steps and kept["draws"] == 3
    assert (tmp_path / "img" / "record_fig6_lasso_5x10.png").stat().st_size > 1000
    assert not (tmp_path / "img" / "record_fig6_lasso_25x50.png").exists()
    page = (tmp_path / "rec.md").read_text()
    assert "](img/record_fig6_lasso_5x10.png)" in page and "no picture is drawn" in page
    kept["mean"][-1] = 0.2
    (tmp_path / "record_curves" / "fig6_lasso_5x10_ista.json").write_text(json.dumps(kept))
    stale = run_cli("run.reproduction", f"--record={record_path}", "--check",
                    f"--spread={bad}")
    assert stale.returncode == 2 and stale.stderr.count("error:") == 1
    assert "error: --spread " in stale.stderr and "sd 9 is not the sd" in stale.stderr
    record = reproduction.load(str(record_path))
    curves = reproduction.load_curves(str(record_path))
    assert reproduction.stale_images(record, curves, str(record_path)) == [
        "img/record_fig6_lasso_5x10.png was drawn from other data than the record's"]


def test_a_variant_spread_is_shown_beside_its_cell_and_sets_no_status():
    record = reproduction.new_record()
    row = [r for r in record["rows"] if (r["figure"], r["setting"], r["method"]) ==
           ("6", "lasso_5x10", "gd")][0]
    row.update(ours=126.2, status="outside")
    reproduction.add_spread(record, _spread(method="gd_other", values=(90.0, 100.0, 110.0)))
    assert row["status"] == "outside" and "spread" not in row
    assert list(row["variants"]) == ["other"] and reproduction.validate(record) == []
    assert "Variant gd_other" in reproduction.render(record)
    assert reproduction.check_spread(_spread(method="gdx")) != []

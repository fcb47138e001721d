"""The catalogue of trained files shipped in the package (open-l2o pretrained)."""
import json
import math
import os
import re
import shutil

import numpy as np
import pytest

from tests.cli import ROOT, run_cli

INDEX = os.path.join(ROOT, "open_l2o_tf", "catalogue", "index.json")
KEYS = {"name", "kind", "method", "file", "bytes", "command", "trained", "budget",
        "meta_seed", "data_seed", "setting", "train_seconds", "cells"}


def test_index_is_valid_and_every_file_matches_its_sha256():
    from open_l2o_tf import catalogue
    with open(INDEX, encoding="utf-8") as f:
        text = f.read()
    assert "/work/" not in text and "/tmp/" not in text      # no machine-local paths
    entries = json.loads(text)["entries"]
    assert entries and len({e["name"] for e in entries}) == len(entries)
    for e in entries:
        assert KEYS <= set(e), (e["name"], KEYS - set(e))
        assert e["kind"] in ("learned optimizer", "unrolled model"), e["name"]
        if e["file"] is None:
            assert e["bytes"] > catalogue.MAX_BYTES and e["produce"], e["name"]
            continue
        path = os.path.join(os.path.dirname(INDEX), e["file"])
        assert os.path.getsize(path) == e["bytes"] <= catalogue.MAX_BYTES, e["name"]
        assert catalogue.sha256(path) == e["sha256"], e["name"]
        if e["kind"] == "unrolled model":
            assert {"make_data", "data_seed", "data_digest"} <= set(e["data"]), e["name"]
        for cell in e["cells"]:
            assert {"figure", "setting", "method", "value", "check"} <= set(cell), e["name"]
            assert math.isfinite(cell["value"]), e["name"]


def test_a_changed_file_is_refused(tmp_path):
    from open_l2o_tf import catalogue
    from open_l2o_tf.errors import UserError
    (tmp_path / "w.npz").write_bytes(b"changed")
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"entries": [{"name": "w", "file": "w.npz",
                                              "sha256": "0" * 64}]}))
    with pytest.raises(UserError, match="sha256"):
        catalogue.path("w", str(index))


def test_pretrained_lists_the_entries():
    proc = run_cli("run.pretrained")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(INDEX, encoding="utf-8") as f:
        names = [e["name"] for e in json.load(f)["entries"]]
    for name in names:
        assert re.search(rf"^{name}\s", proc.stdout, re.M), name
    assert "fig7_n2_l2o_dm" in names and "Fig. 7 n2 l2o_dm" in proc.stdout


def test_load_accepts_a_catalogue_name_and_an_unknown_name_is_one_error_line(tmp_path):
    from open_l2o_tf import catalogue
    from model_free.weights import pretrained
    path = catalogue.resolve_load("fig7_n2_l2o_dm")
    assert path == os.path.join(os.path.dirname(INDEX), "fig7_n2_l2o_dm.npz")
    assert pretrained.peek_kind(path) == "l2o_dm"
    assert catalogue.resolve_load(path) == path                 # a path stays a path
    proc = run_cli("run.rastrigin", "--optimizer=l2o_dm", "--load=fig7_n2_l2o_dn",
                   f"--workdir={tmp_path / 'w'}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: ") and "--load" in lines[0]
    assert "fig7_n2_l2o_dm" in lines[0]                          # the close names


def _check_tiny(tmp_path, shipped, method, cell):
    """Runs ``run.pretrained --check`` on a tiny entry of another index holding a copy of
    the shipped file ``shipped`` with ``cell``; returns (the 'ours now' line, results.json)."""
    shutil.copyfile(os.path.join(os.path.dirname(INDEX), shipped), tmp_path / "tiny.npz")
    from open_l2o_tf import catalogue
    entry = {"name": "tiny", "kind": "learned optimizer", "method": method,
             "file": "tiny.npz", "sha256": catalogue.sha256(str(tmp_path / "tiny.npz")),
             "bytes": os.path.getsize(tmp_path / "tiny.npz"),
             "cells": [dict(cell, figure="7", setting="n2", method=method)]}
    (tmp_path / "index.json").write_text(json.dumps({"entries": [entry]}))
    os.environ[catalogue.ENV] = str(tmp_path / "index.json")
    try:
        proc = run_cli("run.pretrained", "--check=tiny", f"--record={tmp_path / 'none'}",
                       f"--workdir={tmp_path / 'w'}")
    finally:
        del os.environ[catalogue.ENV]
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "w" / "results.json", encoding="utf-8") as f:
        result = json.load(f)
    return [l for l in proc.stdout.splitlines() if "ours now" in l][-1], result


def test_check_re_evaluates_an_entry_on_its_cell(tmp_path):
    # a tiny entry in another index: 2 instances x 1 start, 5 steps of the shipped L2O-DM
    line, result = _check_tiny(tmp_path, "fig7_n2_l2o_dm.npz", "l2o_dm", {
        "value": 123.0, "statistic": "mean loss at step 5",
        "check": {"command": "rastrigin",
                  "args": ["--optimizer=l2o_dm", "--n=2", "--steps=5", "--test_instances=2",
                           "--starts=1", "--seed=0"]}})
    match = re.search(r"ours now (\S+)  record 123.0000 \(the catalogue entry\)  paper "
                      r"5.9000  wall time (\S+) s", line)
    assert match, line
    assert float(match.group(1)) == pytest.approx(result["final"], abs=1e-4)


def test_check_reports_the_quantity_its_cell_records(tmp_path):
    # L2O-Swarm's Fig. 7 cell records the released evaluation's quantity (results.json
    # swarm_original_final), not 'final' (ours: each instance's best particle)
    line, result = _check_tiny(tmp_path, "fig7_n2_l2o_swarm.npz", "l2o_swarm", {
        "value": 1.0, "statistic": "min over particles of the batch-mean loss at step 3",
        "check": {"command": "rastrigin", "result": "swarm_original_final",
                  "args": ["--optimizer=l2o_swarm", "--n=2", "--steps=3",
                           "--test_instances=4", "--starts=2", "--seed=0"]}})
    ours = float(re.search(r"ours now (\S+)", line).group(1))
    assert result["swarm_original_final"] > result["final"] + 1e-3     # the two differ
    assert ours == pytest.approx(result["swarm_original_final"], abs=1e-4)


def test_perf_keras_fit_loads_a_catalogue_name(tmp_path):
    # run.perf defines its own --load (keras_fit): a catalogue name is its file there too,
    # and a mistyped name is one error line with the close names
    from tests.test_datasets import write_tiny_mnist
    mnist = write_tiny_mnist(tmp_path / "mnist", train=32)   # a tiny random MNIST
    out = tmp_path / "perf.json"
    proc = run_cli("run.perf", "--what=keras_fit", "--fit_optimizer=l2o_dm",
                   "--fit_problem=mnist_mlp_relu", "--load=l2o_dm_released",
                   f"--mnist_dir={mnist}", "--measure_steps=2", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text())["keras_fit"]
    assert row["weights"] == os.path.join(os.path.dirname(INDEX), "l2o_dm_released.npz")
    assert len(row["own_curve"]) == len(row["fit_curve"]) == 3
    proc = run_cli("run.perf", "--what=keras_fit", "--fit_optimizer=l2o_dm",
                   "--load=l2o_dm_releasd")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: ") and "l2o_dm_released" in lines[0]


def test_check_of_an_entry_tied_to_its_data(tmp_path):
    """A Fig. 6 entry (an unrolled model tied to its A) is checked on the data its make_data
    command makes; another A, another test split or no --data_dir is one error line."""
    from model_based.factory import build_model
    from open_l2o_tf import catalogue, keras_files
    from open_l2o_tf.data import sparse_recovery
    sizes = dict(num_train=16, num_val=16, num_test=16)
    own, other_a, other_test = (str(tmp_path / n) for n in ("own", "other_a", "other_test"))
    sparse_recovery.generate("lasso_5x10", own, seed=0, progress=None, **sizes)
    sparse_recovery.generate("lasso_5x10", other_a, seed=1, progress=None, **sizes)
    sparse_recovery.generate("lasso_5x10", other_test, seed=0, test_seed=3, progress=None,
                             **sizes)
    data = sparse_recovery.load(own, "test")
    keras_files.save_model(build_model("lista", data.A, data.W, 2, lam=0.4),
                           str(tmp_path / "tiny.keras"))
    entry = {"name": "tiny", "kind": "unrolled model", "method": "lista",
             "file": "tiny.keras", "sha256": catalogue.sha256(str(tmp_path / "tiny.keras")),
             "bytes": os.path.getsize(tmp_path / "tiny.keras"),
             "data": {"make_data": "python -m run.make_data --setting=lasso_5x10 "
                                   "--num_train=16 --num_val=16 --num_test=16 --out=DIR",
                      "data_seed": 0, "data_digest": catalogue.array_digest(data.A),
                      "test_digest": catalogue.array_digest(
                          np.load(os.path.join(own, "test_data.npy")))},
             "cells": [{"figure": "6", "setting": "lasso_5x10", "method": "lista",
                        "value": 4.5e-05, "statistic": "R[4]",
                        "check": {"command": "lasso",
                                  "args": ["--optimizer=lista", "--setting=lasso_5x10",
                                           "--num_layers=2", "--iterations=4"]}}]}
    (tmp_path / "index.json").write_text(json.dumps({"entries": [entry]}))
    os.environ[catalogue.ENV] = str(tmp_path / "index.json")
    try:
        refused = {}
        for label, extra in (("other A", [f"--data_dir={other_a}"]),
                             ("other test", [f"--data_dir={other_test}"]),
                             ("missing", [f"--data_dir={tmp_path / 'nothing'}"]),
                             ("none", [])):
            proc = run_cli("run.pretrained", "--check=tiny", *extra)
            lines = [l for l in proc.stderr.strip().splitlines() if l]
            assert proc.returncode == 2 and len(lines) == 1, (label, proc.stderr[-2000:])
            assert lines[0].startswith("error: ") and "--data_dir" in lines[0], lines[0]
            assert "run.make_data --setting=lasso_5x10" in lines[0], lines[0]
            refused[label] = lines[0]
        assert "A.npy" in refused["other A"] and "test split" in refused["other test"]
        proc = run_cli("run.pretrained", "--check=tiny", f"--data_dir={own}",
                       f"--record={tmp_path / 'none'}", f"--workdir={tmp_path / 'w'}")
    finally:
        del os.environ[catalogue.ENV]
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "w" / "results.json", encoding="utf-8") as f:
        result = json.load(f)
    line = [l for l in proc.stdout.splitlines() if "ours now" in l][-1]
    match = re.search(r"ours now (\S+)  record 4.5e-05 \(the catalogue entry\)  paper "
                      r"(\S+)  wall time", line)
    assert match, line
    assert float(match.group(1)) == pytest.approx(result["final"], abs=1e-4)
    assert match.group(2) != "n/a"              # the paper's Fig. 6 value of the cell

"""Bad inputs across every command: each exits with status 2 and exactly one ``error:``
line naming the flag or file, no traceback, and leaves an existing workdir's checkpoint and
results unchanged.

The cases of one command run in one process (``tests/cli_batch.py``: one TensorFlow import
per command, flags re-parsed per case), so the whole table takes about a minute.
``OPEN_L2O_BAD_INPUTS_TABLE=FILE`` also writes the table (case -> printed line) to FILE.
"""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import shared_data
from tests.test_pretrained_safety import HOSTILE

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ORIGINAL_RNNPROP = shared_data("original_optimizers", "rnnprop.rp.l2l-0")

TINY_SR = ["--data_dir={data}", "--num_layers=2", "--steps_per_epoch=2", "--max_epochs=1",
           "--patience=1", "--batch_size=16", "--nojit"]
# (args, substring the error line must contain, paths that must stay unchanged)
CASES = {
    "run.make_data": [
        (["--setting=noiseless", "--out={out}", "--seed=-1"], "--seed", []),
        (["--setting=noiseless", "--out={a_file}"], "{a_file}", ["{a_file}"]),
        (["--setting=noiseless", "--out={out}", "--num_train=0"], "--num_train", []),
        (["--setting=bogus", "--out={out}"], "--setting", []),
        (["--setting=noiseless"], "--out", []),
        (["--setting=coherent", "--out={out}", "--dictionary={missing}"], "--dictionary", []),
        (["--setting=noiseless", "--out={out}", "--m=-4"], "--m", []),
        # sizes that cannot fit: refused at once with the estimate and the machine's memory
        (["--setting=noiseless", "--out={out}", "--m=10000000", "--n=20000000"],
         "--m=10000000 --n=20000000 needs about", []),
        (["--setting=noiseless", "--out={out}", "--num_train=100000000000"],
         "--num_train=100000000000 needs about", []),
    ],
    "run.sparse_recovery": [
        # setup: a finished tiny run in {w1} (expected status 0)
        (["--model=lista", "--workdir={w1}"] + TINY_SR, None, []),
        (["--model=lista_cp", "--workdir={w1}"] + TINY_SR, "--model='lista'", ["{w1}"]),
        (["--model=lista", "--workdir={w1}", "--lr=0.001"] + TINY_SR, "--lr=0.0005",
         ["{w1}"]),
        (["--model=lista", "--workdir={w1}", "--lr=-1"] + TINY_SR, "--lr", ["{w1}"]),
        (["--model=lista", "--workdir={w1}", "--data_dir={data}", "--num_layers=3",
          "--steps_per_epoch=2", "--max_epochs=1", "--patience=1", "--batch_size=16",
          "--nojit"], "--num_layers=2", ["{w1}"]),
        (["--model=lista", "--workdir={a_file}"] + TINY_SR, "{a_file}", ["{a_file}"]),
        (["--model=lista", "--workdir={readonly}"] + TINY_SR, "{readonly}", []),
        (["--model=lista", "--workdir={w_new}", "--data_dir={a_file}"], "--data_dir", []),
        (["--model=lista", "--workdir={w_new}", "--data_dir={missing}"], "--data_dir", []),
        (["--model=lista", "--workdir={w_new}", "--data_dir={garbage_data}"],
         "A.npy is not a .npy file", ["{garbage_data}"]),
        (["--model=lista", "--workdir={w_new}", "--data_dir={corrupt_meta_data}"],
         "meta.json is corrupt", ["{corrupt_meta_data}"]),
        (["--model=lista", "--workdir={w_new}", "--data_dir={data}", "--load={missing}"],
         "--load", []),
        (["--model=lista", "--workdir={w_new}", "--data_dir={data}", "--load={garbage}"],
         "{garbage}", []),
        (["--model=alista", "--workdir={w_new}", "--data_dir={data}",
          "--load={w1}/model.keras"], "holds a lista model", ["{w1}"]),
        (["--model=lista", "--workdir={w_corrupt_progress}"] + TINY_SR,
         "ckpt/progress.json is corrupt: not JSON",
         ["{w_corrupt_progress}/ckpt"]),
        (["--model=lista", "--workdir={w_truncated_weights}"] + TINY_SR,
         "layer00_stage0/weights.npz cannot be read", ["{w_truncated_weights}/ckpt"]),
        (["--model=lista", "--workdir={w_typed_progress}"] + TINY_SR,
         "progress.json: 'layer' is str",
         ["{w_typed_progress}/ckpt"]),
        (["--model=lista", "--workdir={w_corrupt_runjson}"] + TINY_SR, "run.json",
         ["{w_corrupt_runjson}"]),
        (["--model=lista", "--workdir={w_new}", "--batch_size=0", "--data_dir={data}"],
         "--batch_size", []),
        (["--model=lista", "--workdir={w_new}", "--preset=paper"], "--data_dir", []),
        (["--model=lista", "--workdir={w_new}", "--keep=sometimes"], "--keep", []),
        (["--model=lista", "--workdir={w_new}", "--bogus_flag=1"], "bogus_flag", []),
        (["--model=lista", "--workdir={w_big}", "--data_dir={data}", "--num_layers=10000000",
          "--batch_size=4096"], "--num_layers=10000000 (a 8x16 lista) needs about", []),
        (["--model=lista", "--workdir={w_new}", "--cpu_replicas=2"], "--cpu_replicas", []),
        (["--model=lista", "--workdir={w_new}", "--strategy=multi_worker"], "TF_CONFIG", []),
        (["--model=lista", "--workdir={w_new}", "--strategy=gpu"], "--strategy", []),
        # a good run: the 2-layer model of {w1} loaded (results must say 2 layers)
        (["--model=lista", "--workdir={w_load}", "--data_dir={data}",
          "--load={w1}/model.keras"], None, []),
    ],
    "run.lasso": [
        (["--optimizer=fista", "--workdir={w_new}", "--load={missing}"], "--load", []),
        (["--optimizer=lista", "--workdir={w_new}", "--data_dir={data}",
          "--load={garbage}"], "{garbage}", []),
        (["--optimizer=gd", "--workdir={w_new}", "--lr=-1"], "--lr", []),
        (["--optimizer=l2o_dm", "--workdir={w_new}", "--meta_episodes=-1"], "--meta_episodes",
         []),
        (["--optimizer=fista", "--workdir={a_file}"], "{a_file}", ["{a_file}"]),
        (["--optimizer=fista", "--workdir={w_new}", "--data_dir={a_file}"], "--data_dir", []),
        (["--optimizer=l2o_dm", "--workdir={w_new}", "--data_dir={data}",
          "--load={swarm_npz}"], "holds l2o_swarm weights", ["{swarm_npz}"]),
        (["--optimizer=fista", "--workdir={w_new}", "--iterations=0"], "--iterations", []),
        (["--optimizer=fista", "--workdir={w_new}", "--data_dir={corrupt_meta_data}"],
         "meta.json is corrupt", []),
        (["--optimizer=fista", "--workdir={w_new}", "--meta_episodes=5"], "--meta_episodes",
         []),
        (["--optimizer=fista", "--workdir={w_new}", "--strategy=mirrored"], "--strategy",
         []),
    ],
    "run.rastrigin": [
        (["--optimizer=nag_ls", "--workdir={w_new}", "--test_instances=-3"],
         "--test_instances", []),
        (["--optimizer=l2o_scale", "--workdir={w_new}", "--load={rnnprop}"],
         "holds l2o_rnnprop weights", []),
        (["--optimizer=l2o_dm", "--workdir={w_new}", "--load={twin_npz}"],
         "holds twin_l2o weights", []),
        (["--optimizer=l2o_swarm", "--workdir={w_new}", "--load={foreign_npz}"],
         "{foreign_npz}", []),
        (["--optimizer=l2o_swarm", "--workdir={w_new}", "--load={garbage}"], "{garbage}", []),
        (["--optimizer=nag_ls", "--workdir={w_new}", "--load={missing}"], "--load", []),
        (["--optimizer=l2o_dm", "--workdir={w_new}", "--meta_lr=-1"], "--meta_lr", []),
        (["--optimizer=l2o_dm", "--workdir={w_corrupt_meta_state}", "--preset=quick",
          "--meta_episodes=1", "--steps=5"], "meta_state.json is corrupt: not JSON",
         ["{w_corrupt_meta_state}/ckpt"]),
        (["--optimizer=l2o_dm", "--workdir={w_truncated_last}", "--preset=quick",
          "--meta_episodes=1", "--steps=5"], "ckpt/last.npz cannot be read",
         ["{w_truncated_last}/ckpt"]),
        (["--optimizer=l2o_dm", "--workdir={w_truncated_legacy}", "--preset=quick",
          "--meta_episodes=1", "--steps=5"], "ckpt/last.npz cannot be read",
         ["{w_truncated_legacy}/ckpt"]),
        (["--optimizer=nag_ls", "--workdir={w_new}", "--n=0"], "--n", []),
        (["--optimizer=adam", "--workdir={w_new}", "--line_search_scope=batch"],
         "--line_search_scope", []),
        (["--optimizer=nag_ls", "--workdir={w_new}", "--strategy=mirrored"],
         "--optimizer=nag_ls trains nothing", []),
        (["--optimizer=nag_ls", "--workdir={w_new}", "--unroll=40"], "--unroll", []),
        (["--optimizer=l2o_scale", "--workdir={w_new}", "--unroll=30"], "--unroll", []),
    ],
    "run.nn_training": [
        (["--optimizer=l2o_dm", "--workdir={w_new}", "--load={forged_dtype}"],
         "{forged_dtype}", []),
        (["--optimizer=l2o_dm", "--workdir={w_new}", "--load={os_system}"],
         "{os_system}", []),
        (["--optimizer=l2o_dm", "--workdir={w_new}", "--load={self_ref}"],
         "{self_ref}", []),
        (["--optimizer=adam", "--workdir={w_truncated_test_runs}"],
         "ckpt/test_runs.npz is not a readable record of finished test runs (BadZipFile",
         ["{w_truncated_test_runs}/ckpt"]),
        (["--optimizer=adam", "--workdir={w_new}", "--load={missing}"], "--load", []),
        (["--optimizer=adam", "--workdir={w_new}", "--lr=-1"], "--lr", []),
        (["--optimizer=adam", "--workdir={w_new}", "--mnist_dir={a_file}"], "--mnist_dir",
         []),
        (["--optimizer=adam", "--workdir={w_new}", "--steps=0"], "--steps", []),
        (["--optimizer=l2o_dm", "--workdir={w_new}", "--load={twin_npz}"],
         "holds twin_l2o weights", []),
        (["--optimizer=adam", "--workdir={a_file}"], "{a_file}", ["{a_file}"]),
        (["--optimizer=adam", "--workdir={w_new}", "--strategy=mirrored"],
         "--optimizer=adam trains nothing", []),
        (["--optimizer=l2o_dm", "--workdir={w_new}", "--loss_record=pre"],
         "--loss_record", []),
        (["--optimizer=adam", "--workdir={w_new}", "--problem=cifar_conv",
          "--mnist_train_images=55000"], "--mnist_train_images", []),
        (["--optimizer=adam", "--workdir={w_new}", "--mnist_split=test",
          "--mnist_train_images=55000"], "--mnist_train_images", []),
        (["--optimizer=adam", "--workdir={w_new}", "--mnist_holdout=last"],
         "--mnist_holdout", []),
    ],
    "run.minimax": [
        (["--optimizer=gda", "--workdir={w_new}", "--load={missing}"], "--load", []),
        (["--optimizer=twin_l2o", "--workdir={w_corrupt_twin}", "--preset=quick",
          "--epochs=1", "--hidden=4"], "twin_state.npz cannot be read", ["{w_corrupt_twin}/ckpt"]),
        (["--optimizer=gda", "--workdir={w_new}", "--keep_probability=2"],
         "--keep_probability", []),
        (["--optimizer=gda", "--workdir={w_new}", "--half_steps=3"], "--half_steps", []),
        (["--optimizer=gda", "--workdir={w_new}", "--strategy=mirrored"],
         "--optimizer=gda trains nothing", []),
        (["--optimizer=gda", "--workdir={a_file}"], "{a_file}", ["{a_file}"]),
        (["--optimizer=twin_l2o", "--workdir={w_new}", "--load={dm_npz}"],
         "holds l2o_dm weights", []),
    ],
    "run.perf": [
        (["--out={a_dir}"], "--out", []),
        (["--models=bogus"], "--models", []),
        (["--m=0"], "--m", []),
    ],
    "run.benchmark": [
        (["--out={a_file}"], "--out", ["{a_file}"]),
        (["--out={out}", "--only=("], "--only", []),
        (["--out={out}", "--run_timeout=-1"], "--run_timeout", []),
    ],
    "run.convert_original": [
        ([], "two arguments", []),
        (["{garbage}", "{out}.npz"], "{garbage}", []),
        (["{forged_dtype}", "{out}.npz"], "{forged_dtype}", []),
        (["{rnnprop}", "{a_dir}"], "{a_dir}", []),
        (["--problem=mnist", "{raw_dm}", "{out}.npz"], "--problem=rastrigin", []),
    ],
}


def _prepared():
    """Workdirs holding a broken checkpoint file behind a valid ``run.json``: the case's
    own checks write the ``run.json`` of its flags into the empty workdir first
    (``tests/cli_batch.py``'s ``prepare``), then the file is written, so the case tests the
    checkpoint's check, not the refusal of a workdir without ``run.json``."""
    from model_free.meta.episodic import _config  # pylint: disable=import-outside-toplevel
    from model_free.rules.twin import TwinL2O  # pylint: disable=import-outside-toplevel
    truncated = _truncated_npz()
    return {
        # each file a command resumes from, cut in half (docs/reliability.md)
        "w_truncated_test_runs": {"ckpt/test_runs.npz": truncated},
        "w_truncated_last": {"ckpt/last.npz": truncated, "ckpt/trainer_state.npz": truncated},
        "w_truncated_legacy": {"ckpt/meta_state.json": json.dumps({"episode": 1,
                                                                   "truncations": 1}),
                               "ckpt/last.npz": truncated},
        "w_truncated_weights": {
            "ckpt/progress.json": json.dumps({"layer": 0, "stage": 0,
                                              "checkpoint": "layer00_stage0",
                                              "test_metric": [], "global_step": 2,
                                              "train_seconds": 1.0}),
            "ckpt/layer00_stage0/weights.npz": truncated},
        "w_corrupt_progress": {"ckpt/progress.json": "{\"layer\": 0, \"sta"},
        "w_typed_progress": {"ckpt/progress.json": json.dumps(
            {"layer": "one", "stage": 0, "checkpoint": "layer00_stage0"})},
        "w_corrupt_meta_state": {"ckpt/meta_state.json": "{\"episode\": 3,"},
        "w_corrupt_twin": {
            "ckpt/twin_state.json": json.dumps({"episode": 1, "best_score": None,
                                                "config": _config(TwinL2O(hidden=4))}),
            "ckpt/twin_state.npz": "PK\x03\x04 truncated zip"},
    }


def _truncated_npz():
    """``"hex:..."`` (tests/cli_batch.py): the first half of a real .npz, as a write cut
    short by a crash or a full disk leaves it."""
    import io  # pylint: disable=import-outside-toplevel
    buffer = io.BytesIO()
    np.savez(buffer, curves=np.zeros((2, 50)), seconds=np.ones(2))
    data = buffer.getvalue()
    return "hex:" + data[:len(data) // 2].hex()


def _write_fixtures(base):
    """Every file and workdir the cases refer to, under ``base``."""
    from model_free.rules.dm import L2ODM  # pylint: disable=import-outside-toplevel
    from model_free.rules.rnnprop import L2ORNNprop  # pylint: disable=import-outside-toplevel
    from model_free.rules.swarm import L2OSwarm  # pylint: disable=import-outside-toplevel
    from model_free.rules.twin import TwinL2O  # pylint: disable=import-outside-toplevel
    from model_free.weights import pretrained  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.data import sparse_recovery  # pylint: disable=import-outside-toplevel
    p = {name: os.path.join(base, name) for name in (
        "out", "w1", "w_new", "missing", "a_file", "a_dir", "garbage", "garbage_data",
        "corrupt_meta_data", "data", "w_corrupt_progress", "w_typed_progress",
        "w_corrupt_runjson", "w_corrupt_meta_state", "w_corrupt_twin", "w_load",
        "w_truncated_test_runs", "w_truncated_last", "w_truncated_legacy",
        "w_truncated_weights", "w_big")}
    sparse_recovery.generate("noiseless", p["data"], m=8, n=16, num_train=64, num_val=32,
                             num_test=32, seed=0)
    with open(p["a_file"], "w", encoding="utf-8") as handle:
        handle.write("a plain file\n")
    os.makedirs(p["a_dir"])
    with open(p["garbage"], "wb") as handle:
        handle.write(b"\x80\x03 this is garbage, not weights" * 3)
    for name in ("garbage_data", "corrupt_meta_data"):
        sparse_recovery.generate("noiseless", p[name], m=8, n=16, num_train=64, num_val=32,
                                 num_test=32, seed=0, compute_W=False)
    with open(os.path.join(p["garbage_data"], "A.npy"), "wb") as handle:
        handle.write(b"not an array at all")
    with open(os.path.join(p["corrupt_meta_data"], "meta.json"), "w", encoding="utf-8") as h:
        h.write("{not json")
    for kind, opt in (("swarm_npz", L2OSwarm(dim=2)), ("twin_npz", TwinL2O(hidden=4)),
                      ("dm_npz", L2ODM()), ("rnnprop_npz", L2ORNNprop())):
        p[kind] = os.path.join(base, kind + ".npz")
        pretrained.save_optimizer(opt, p[kind])
    p["foreign_npz"] = os.path.join(base, "foreign.npz")
    np.savez(p["foreign_npz"], a=np.zeros(3))
    p["rnnprop"] = ORIGINAL_RNNPROP or p["rnnprop_npz"]
    p["raw_dm"] = os.path.join(base, "raw_dm.cw.l2l-0")     # an L2O-DM on raw gradients
    with open(p["raw_dm"], "wb") as handle:
        handle.write(pickle.dumps({"lstm_1": {"w_gates": np.zeros((21, 80), np.float32),
                                              "b_gates": np.zeros(80, np.float32)}}))
    for key, case in (("forged_dtype", "forged_dtype_object_field"),
                      ("os_system", "reduce_os_system"), ("self_ref", "self_referential_dict")):
        p[key] = os.path.join(base, key + ".cw.l2l-0")
        with open(p[key], "wb") as handle:
            handle.write(HOSTILE[case])
    # a workdir with a corrupt run.json (the checkpoint files of the PREPARED workdirs are
    # written by tests/cli_batch.py behind the run.json of the case's own flags)
    for rel, text in (("run.json", "[1, 2"), ("results.json", "{}")):
        path = os.path.join(p["w_corrupt_runjson"], rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    p["readonly"] = _readonly_dir(base)
    return p


def _readonly_dir(base):
    """A directory this process cannot write: chmod 0555 for a normal user; root writes
    anywhere on a normal file system, so /sys/kernel (sysfs refuses new files)."""
    if os.geteuid() != 0:
        path = os.path.join(base, "readonly")
        os.makedirs(path)
        os.chmod(path, 0o555)
        return path
    return "/sys/kernel"


def _fmt(value, paths):
    return value.format(**paths)


def _run_module(module, cases, paths, base):
    spec = [{"args": [_fmt(a, paths) for a in args],
             "watch": [_fmt(w, paths) for w in watch]} for args, _, watch in cases]
    prepared = _prepared() if paths else {}
    for case, (args, _, _) in zip(spec, cases):
        for name, files in prepared.items():
            if f"--workdir={{{name}}}" in args:
                case["prepare"] = {"files": {os.path.join(paths[name], rel): text
                                             for rel, text in files.items()}}
    cases_path = os.path.join(base, f"{module}.cases.json")
    results_path = os.path.join(base, f"{module}.results.json")
    with open(cases_path, "w", encoding="utf-8") as handle:
        json.dump(spec, handle)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "cli_batch.py"), module,
                           cases_path, results_path], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(results_path, encoding="utf-8") as handle:
        return json.load(handle)


def test_at_least_forty_cases():
    bad = sum(1 for cases in CASES.values() for _, expect, _ in cases if expect is not None)
    assert bad >= 40
    assert set(CASES) == {"run.make_data", "run.sparse_recovery", "run.lasso",
                          "run.rastrigin", "run.nn_training", "run.minimax", "run.perf",
                          "run.benchmark", "run.convert_original"}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("bad_inputs"))
    return base, _write_fixtures(base)


@pytest.mark.parametrize("module", sorted(CASES))
def test_bad_inputs(module, fixtures):
    base, paths = fixtures
    results = _run_module(module, CASES[module], paths, base)
    failures, rows = [], []
    for (args, expect, _), result in zip(CASES[module], results):
        shown = " ".join(result["args"]).replace(base + "/", "")
        errors = [l for l in result["stderr"].splitlines() if l.startswith("error:")]
        if expect is None:      # a setup run
            if result["code"] != 0:
                failures.append(f"setup {shown}: exit {result['code']}: "
                                f"{result['stderr'][-1500:]}")
            continue
        expect = _fmt(expect, paths)
        rows.append((module, shown, errors[0].replace(base + "/", "") if errors else
                     result["stderr"][-300:]))
        problems = []
        if result["code"] != 2:
            problems.append(f"exit {result['code']}")
        if len(errors) != 1:
            problems.append(f"{len(errors)} error lines")
        elif expect not in errors[0]:
            problems.append(f"error line lacks {expect!r}")
        if "Traceback" in result["stderr"]:
            problems.append("traceback")
        if result["changed"]:
            problems.append(f"changed {result['changed']}")
        if problems:
            failures.append(f"{shown}: {', '.join(problems)}: {result['stderr'][-1500:]}")
    table = os.environ.get("OPEN_L2O_BAD_INPUTS_TABLE")
    if table:
        with open(table, "a", encoding="utf-8") as handle:
            for row in rows:
                handle.write("| `python -m {} {}` | `{}` |\n".format(*row))
    assert not failures, "\n".join(failures)
    if module == "run.sparse_recovery":
        _check_sparse_recovery_results(paths)


def _check_sparse_recovery_results(paths):
    """results.json tells the truth (issue 9, item 7): the final model's per-layer NMSE and
    each layer's NMSE at the end of its own training under two keys; the true depth, and no
    16-layer paper value beside a 2-layer curve."""
    with open(os.path.join(paths["w1"], "results.json"), encoding="utf-8") as handle:
        trained = json.load(handle)
    assert trained["complete"] and trained["layers"] == 2 and len(trained["curve"]) == 2
    assert len(trained["curve_at_layer_end"]) == 2
    assert trained["paper"] is None and trained["paper_layers"] == 16
    # nothing trains after the last layer's stages: its two values agree
    assert trained["curve"][-1] == pytest.approx(trained["curve_at_layer_end"][-1], abs=1e-3)
    with open(os.path.join(paths["w_load"], "results.json"), encoding="utf-8") as handle:
        loaded = json.load(handle)
    assert loaded["layers"] == 2 and loaded["paper"] is None
    assert loaded["curve"] == pytest.approx(trained["curve"], abs=1e-4)


def test_make_data_settings_match_the_library():
    from open_l2o_tf.data import sparse_recovery  # pylint: disable=import-outside-toplevel
    from run import make_data  # pylint: disable=import-outside-toplevel
    assert make_data.SETTINGS == sorted(sparse_recovery.SETTINGS)

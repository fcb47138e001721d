"""The commands' pieces are usable from Python (issue 12 item 7): each script runs in its
own process (a command module defines its flags on import)."""
import json
import subprocess
import sys
import textwrap


def _run(script, tmp_path):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_rastrigin_pieces(tmp_path):
    out = _run("""
        import json
        import numpy as np
        from run import rastrigin
        family, test, x0 = rastrigin.build_problem(2, count=4, starts=3, seed=1)
        curve = np.asarray(rastrigin.run_classic("nag_ls", family, test, x0, 30))
        print(json.dumps({"shape": list(curve.shape), "first": float(curve[0].mean()),
                          "last": float(curve[-1].mean())}))
        """, tmp_path)
    assert out["shape"] == [31, 12] and out["last"] < out["first"]


def test_rastrigin_learned_piece(tmp_path):
    """run_learned takes its options as arguments: it runs with the flags unparsed."""
    out = _run("""
        import json, sys
        import numpy as np
        from run import rastrigin
        family, test, x0 = rastrigin.build_problem(2, count=2, starts=1, seed=0)
        curve, info, extra = rastrigin.run_learned(
            "l2o_dm", family, test, x0, 10, workdir=sys.argv[1], episodes=1, unroll=20,
            selection="last_truncation")
        print(json.dumps({"shape": list(np.asarray(curve).shape),
                          "episodes": info["episodes"] if "episodes" in info else 1,
                          "extra": sorted(extra)}))
        """, tmp_path)
    assert out["shape"] == [11, 2] and out["extra"] == ["meta_training"]


def test_rastrigin_batch_line_search(tmp_path):
    """--line_search_scope=batch: one Armijo search per start on the mean of the instances
    (a curve of starts columns, first row the mean start loss); with one instance it is the
    per-instance search."""
    out = _run("""
        import json
        import numpy as np
        from run import rastrigin
        family, test, x0 = rastrigin.build_problem(2, count=4, starts=3, seed=1)
        per = np.asarray(rastrigin.run_classic("gd_ls", family, test, x0, 20))
        bat = np.asarray(rastrigin.run_classic("gd_ls", family, test, x0, 20,
                                               line_search_scope="batch", starts=3))
        f1, t1, y1 = rastrigin.build_problem(2, count=1, starts=3, seed=1)
        one = [np.asarray(rastrigin.run_classic("gd_ls", f1, t1, y1, 20,
                                                line_search_scope=s, starts=3))
               for s in ("instance", "batch")]
        print(json.dumps({"shape": list(bat.shape), "first": [float(per[0].mean()),
                          float(bat[0].mean())], "down": bool(bat[-1].mean() < bat[0].mean()),
                          "one": float(np.abs(one[0] - one[1]).max())}))
        """, tmp_path)
    assert out["shape"] == [21, 3] and out["down"]
    assert abs(out["first"][0] - out["first"][1]) < 1e-4 and out["one"] < 1e-4


def test_sparse_recovery_pieces(tmp_path):
    out = _run("""
        import json, os, sys
        from run import sparse_recovery as sr
        workdir = sys.argv[1]
        train, val, test, data_dir = sr.load_data(None, workdir, "quick", seed=0)
        model = sr.build("lista_cpss", train, 2, lam=0.4, faithful_init=True)
        from model_based.progressive import evaluate
        untrained = [float(c) for c in evaluate(model, test.y, test.x)]
        curve, seconds, steps, at_end, state = sr.train(
            model, train, val, test, workdir, None, lr=5e-4, steps_per_epoch=5,
            max_epochs=2, progress=None, jit_compile=False)
        loaded = sr.load(os.path.join(workdir, "model.keras"), "lista_cpss", test, data_dir)
        print(json.dumps({"curve": [float(c) for c in curve], "untrained": untrained,
                          "steps": steps,
                          "at_end": len(at_end), "layers": loaded.num_layers,
                          "stops": [w for row in state.get("stage_stop", []) for w in row],
                          "data": os.path.basename(data_dir)}))
        """, tmp_path)
    assert len(out["curve"]) == 2 and out["curve"][-1] < out["untrained"][-1] - 1.0
    assert out["steps"] > 0 and out["at_end"] == 2 and out["layers"] == 2
    assert out["data"] == "data"
    assert out["stops"] and all(w is not None for w in out["stops"])


def test_minimax_pieces(tmp_path):
    out = _run("""
        import json
        from run import minimax     # flags not parsed: the pieces read none
        problem = minimax.build_problem("saddle", 1)
        curve = minimax.play_all(problem, None, 3, 1, 40, method="gda", lr=0.1)
        print(json.dumps({"n": len(curve), "first": float(curve[0]),
                          "last": float(curve[-1])}))
        """, tmp_path)
    assert out["n"] == 41 and out["last"] < out["first"]


def test_lasso_classic_original_gradient_and_rmsprop(tmp_path):
    """--grad_reduction=batch divides each instance's gradient by --grad_batch (the
    original's reduce_mean over 128); RMSProp's accumulator starts at 1.0 (TF1)."""
    out = _run("""
        import json
        import numpy as np
        from run import lasso
        rng = np.random.default_rng(0)
        A = rng.normal(size=(3, 5)).astype(np.float32)
        y = rng.normal(size=(4, 3)).astype(np.float32)
        def curve(name, **options):     # a piece usable from Python: arguments, no flags
            return np.asarray(lasso.run_classic(name, A, y, 0.005, 20, jit=False, **options))
        res = {
            "batch4": curve("gd", lr=0.1, grad_batch=4).tolist(),
            "sum_lr": curve("gd", lr=0.025, grad_reduction="sum").tolist(),
            "sum": curve("gd", lr=0.1, grad_reduction="sum").tolist(),
            "rms1": curve("rmsprop", lr=0.01, grad_reduction="sum").tolist(),
            "rms0": curve("rmsprop", lr=0.01, grad_reduction="sum",
                          rmsprop_accumulator=0.0).tolist()}
        print(json.dumps(res))
        """, tmp_path)
    import numpy as np
    np.testing.assert_allclose(out["batch4"], out["sum_lr"], rtol=1e-5)
    assert not np.allclose(out["batch4"], out["sum"])
    drop1 = np.mean(out["rms1"][0]) - np.mean(out["rms1"][1])
    drop0 = np.mean(out["rms0"][0]) - np.mean(out["rms0"][1])
    assert 0 < drop1 < 0.5 * drop0

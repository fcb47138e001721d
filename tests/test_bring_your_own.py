"""Bring your own: a researcher's module outside the toolbox registers a learned optimizer
and an unrolled model; ``--import`` makes them run through the command lines and
``run.benchmark`` (its row in the report, its curve in the figure's results)."""
import json
import os
import textwrap

from tests.cli import error_lines, run_cli

# the README's example, verbatim in spirit: one file, two registrations
USER_MODULE = textwrap.dedent('''
    import keras, tensorflow as tf
    from model_based.lista import Lista
    from model_free.rules.base import LearnedOptimizer
    from open_l2o_tf import registry

    class LearnedSGD(LearnedOptimizer):                  # x <- x - exp(a) g, a learned
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.a = self.add_weight(name="log_lr", shape=(),
                                     initializer=keras.initializers.Constant(-3.0))
        def initial_state(self, params):
            return tf.zeros([])
        def update(self, grads, state, params=None, training=False):
            return [-tf.exp(self.a) * g for g in grads], state

    registry.register("learned", "my_sgd", LearnedSGD, interface="update", coordinatewise=True)
    registry.register("model", "my_lista", Lista)        # any UnrolledModel subclass
''')


def _user_package(tmp_path):
    package = tmp_path / "user_code" / "byo_l2o"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "mine.py").write_text(USER_MODULE)
    return str(tmp_path / "user_code")


def _run(module, *args, path):
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = path + (os.pathsep + old if old else "")
    try:
        return run_cli(module, *args)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def test_user_optimizer_and_model_through_the_commands_and_the_benchmark(tmp_path):
    path = _user_package(tmp_path)
    out = tmp_path / "bench"
    run_dir = out / "runs" / "rastrigin_n2_my_sgd"     # the benchmark's name for this run
    proc = _run("run.rastrigin", "--import=byo_l2o.mine", "--optimizer=my_sgd",
                "--preset=quick", "--n=2", "--steps=20", "--test_instances=2",
                "--meta_episodes=2", f"--workdir={run_dir}", path=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.load(open(run_dir / "results.json"))
    assert record["method"] == "my_sgd" and len(record["curve"]) == 21
    assert record["curve"][-1] < record["curve"][0]          # a 20-step descent
    best = record["best_so_far_curve"]                        # each instance's running min
    assert len(best) == 21 and abs(best[0] - record["curve"][0]) < 1e-4
    assert all(b <= c + 1e-4 for b, c in zip(best, record["curve"]))
    assert all(b1 <= b0 for b0, b1 in zip(best, best[1:]))
    assert record["best_so_far_final"] == best[-1]
    assert record["config"]["import"] == ["byo_l2o.mine"]

    proc = _run("run.benchmark", "--import=byo_l2o.mine", f"--out={out}", "--dry_run",
                "--only=my_", path=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("sparse_noiseless_my_lista", "lasso_my_sgd", "rastrigin_n2_my_sgd",
                 "nn_mnist_mlp_relu_my_sgd"):
        line = next(l for l in proc.stdout.splitlines() if f" {name}:" in l)
        assert "--import=byo_l2o.mine" in line
    proc = _run("run.benchmark", "--import=byo_l2o.mine", f"--out={out}", "--report_only",
                path=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = open(out / "report.md").read()
    assert "| n2 | my_sgd |" in report
    records = json.load(open(out / "results.json"))
    assert [r["method"] for r in records] == ["my_sgd"]
    assert any(f.endswith(".png") and "rastrigin" in f for f in os.listdir(out))

    work = tmp_path / "sparse"
    proc = _run("run.sparse_recovery", "--import=byo_l2o.mine", "--model=my_lista",
                "--preset=quick", "--num_layers=2", "--steps_per_epoch=5", "--max_epochs=2",
                "--nojit", f"--workdir={work}", path=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.load(open(work / "results.json"))
    assert record["method"] == "my_lista" and len(record["curve"]) == 2


def test_import_errors_are_one_line(tmp_path):
    path = _user_package(tmp_path)
    proc = _run("run.rastrigin", "--import=byo_l2o.nope", "--optimizer=my_sgd",
                f"--workdir={tmp_path / 'w'}", path=path)
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: --import=byo_l2o.nope: cannot import it")
    # without the import, the name is not a valid value
    proc = _run("run.rastrigin", "--optimizer=my_sgd", f"--workdir={tmp_path / 'w'}",
                path=path)
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1 and "my_sgd" in lines[0]

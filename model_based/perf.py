"""Speed of the unrolled models (``run.perf --what=model_based``).

For each model at m x n, T layers, batch b: the median time of one compiled training step
(forward + backward through all T layers + Adam on every variable) and the inference
throughput of the T-layer model, both also as a fraction of the machine's measured
float32 matmul throughput (model FLOPs counted from its matmuls).
"""
import time

import numpy as np
import tensorflow as tf

from model_based.factory import build_model, model_class
from open_l2o_tf import registry
from open_l2o_tf.data.alista_weight import analytic_weight
from open_l2o_tf.data.sparse_recovery import gaussian_matrix, sample_measurements
from open_l2o_tf.perf_utils import matmul_flops, matmul_rates, median_time

def default_models():
    """Every registered model that ``run.sparse_recovery`` serves (registry ``commands``)."""
    return tuple(sorted(registry.serving("sparse_recovery", ("model",))))


def training_models():
    """The models ``run.perf --what=training`` times by default: those whose class says
    ``perf_training``."""
    return tuple(name for name in default_models() if model_class(name).perf_training)


def _forward_flops(name, m, n, T, b):
    return T * model_class(name).layer_flops(m, n, b)


def _needs_W(models):
    return any(model_class(name).needs_W for name in models)


def _compiled(model, y, x, jit_compile):
    variables = model.trainable_variables
    slots = [tf.Variable(tf.zeros_like(v)) for v in variables]

    @tf.function(jit_compile=jit_compile)
    def train_step():
        with tf.GradientTape() as tape:
            loss = 0.5 * tf.reduce_sum(tf.square(model(y)[-1] - x))
        grads = tape.gradient(loss, variables)
        for v, s, g in zip(variables, slots, grads):
            s.assign(0.9 * s + 0.1 * g)
            v.assign_sub(1e-6 * s)
        return loss

    @tf.function(jit_compile=jit_compile)
    def infer():
        return model(y)[-1]

    return train_step, infer


def benchmark_model_based(models=None, m=256, n=512, num_layers=16, batch=128,
                          repeats=10, jit_compile="both", progress=print):
    models = default_models() if models is None else models
    peak = matmul_flops()
    A = gaussian_matrix(m, n, 0)
    W = analytic_weight(A) if _needs_W(models) else None
    y, x = sample_measurements(A, 1, batch)
    rows = []
    for name in models:
        model = build_model(name, A, W, num_layers)
        timings = {}
        for jit in ((True, False) if jit_compile == "both" else (bool(jit_compile),)):
            train_step, infer = _compiled(model, y, x, jit)
            timings[jit] = (median_time(lambda: train_step().numpy(), repeats),
                            median_time(lambda: infer().numpy(), repeats))
        flops = _forward_flops(name, m, n, num_layers, batch)
        best = min(timings, key=lambda j: timings[j][0])
        step, fwd = timings[best]
        row = {"model": name, "xla": best, "train_step_ms": 1e3 * step,
               "train_frac_peak": 3 * flops / step / peak, "infer_samples_per_s": batch / fwd,
               "infer_frac_peak": flops / fwd / peak,
               "train_step_ms_by_xla": {str(j): 1e3 * t[0] for j, t in timings.items()}}
        rows.append(row)
        if progress:
            other = "; ".join(f"{'XLA' if j else 'no XLA'} {1e3 * t[0]:.1f} ms"
                              for j, t in timings.items())
            progress(f"[perf] {name:10s} train step {row['train_step_ms']:7.2f} ms "
                     f"({100 * row['train_frac_peak']:5.1f}% of matmul peak)  inference "
                     f"{row['infer_samples_per_s']:9.0f} samples/s "
                     f"({100 * row['infer_frac_peak']:5.1f}%)  [{other}]")
    return {"matmul_gflops": peak / 1e9, "rows": rows, "m": m, "n": n,
            "num_layers": num_layers, "batch": batch}


TRAINING_SIZES = {"quick": dict(m=64, n=128, num_layers=8, num_train=8192, steps=100),
                  "paper": dict(m=256, n=512, num_layers=16, num_train=51200, steps=400)}


def _time_old_steps(trainer, depth, stage, k):
    """The baseline: the loop of a trainer that makes one call per step (gather, one
    compiled step with the full forward pass, host sync per step)."""
    epochs = trainer.epochs
    step = epochs.single_step(depth, stage)
    order = epochs.batches(depth - 1, stage, 0)
    bs = trainer.settings.batch_size

    def run(count):
        for i in range(count):
            lo = (i * bs) % (epochs.num_train - bs + 1)
            idx = order[lo:lo + bs]
            loss, finite = step(tf.gather(epochs.train_y, idx), tf.gather(epochs.train_x, idx))
            bool(finite)
            float(loss)
    run(2)
    start = time.perf_counter()
    run(k)
    return (time.perf_counter() - start) / k


def _epoch_timer(trainer, depth, stage, masks="float"):
    """``(time, cache_seconds)``: ``time()`` runs the compiled epoch of the stage (stage 1
    from the cache) once and returns its seconds per step; traced as training traces it
    (the k-th value on the host when the trainer does), with the shrinkage's boolean-mask
    implementation when ``masks="where"`` (:func:`model_based.shrinkage.boolean_masks`)."""
    from model_based import shrinkage  # pylint: disable=import-outside-toplevel
    cached = stage == 0 and depth > 1
    epochs = trainer.epochs
    cache_seconds = 0.0
    cache = ()
    with shrinkage.kth_on_host(epochs.kth_on_host), \
            shrinkage.boolean_masks(masks == "where"):
        epoch = epochs.make_epoch(depth, stage, cached)
        if cached:
            epochs.cache(depth, epochs.train_y[:256])
            start = time.perf_counter()
            cache = epochs.cache(depth, epochs.train_y)
            epochs.cache(depth, epochs.val_y)
            cache_seconds = time.perf_counter() - start
        order = epochs.batches(depth - 1, stage, 0)
        args = (order, epochs.train_y, epochs.train_x, cache)
        float(epoch(*args)[0])          # traced here, inside the contexts

    def run(cpu=False):
        start, cpu_start = time.perf_counter(), time.process_time()
        float(epoch(*args)[0])
        steps = trainer.settings.steps_per_epoch
        wall = (time.perf_counter() - start) / steps
        return (wall, (time.process_time() - cpu_start) / steps) if cpu else wall

    return run, cache_seconds


def _time_new_epoch(trainer, depth, stage, k):
    """The compiled epoch of ``k`` steps (stage 1 from the cache); returns (per-step seconds,
    seconds to build the stage's cache on the whole training + validation split)."""
    del k
    run, cache_seconds = _epoch_timer(trainer, depth, stage)
    return run(), cache_seconds


def compare_shrinkage(models=None, sizes=("paper",), batch=128, measure_steps=10, rounds=5,
                      progress=print):
    """The training step with the current shrinkage (float arithmetic) and with the
    previous one (boolean masks and ``tf.where``) in one process: for every size, model,
    depth (1, T/2, T) and stage (1, 2), ``rounds`` rounds, each timing the machine's matmul
    rate and one compiled epoch of ``measure_steps`` steps of both, in turn.  Reports the
    medians over rounds of ms per step and of each round's step / floor (the floor: 3 x the
    forward matmul FLOPs of the layers the step runs at that round's matmul rate) and of
    the per-round ratio current / previous, in wall time and in the process's CPU time
    (step CPU seconds / the matmul reference's FLOPs per CPU second: on a loaded machine,
    where a process waits for the cores, the work done rather than the wait)."""
    from model_based.progressive import ProgressiveTrainer  # pylint: disable=import-outside-toplevel
    models = training_models() if models is None else models
    report = {"rounds": rounds, "rows": []}
    rates = matmul_rates()
    for size in sizes:
        cfg = TRAINING_SIZES[size]
        m, n, T = cfg["m"], cfg["n"], cfg["num_layers"]
        A = gaussian_matrix(m, n, 0)
        W = analytic_weight(A) if _needs_W(models) else None
        train = [a.numpy() for a in sample_measurements(A, 1, cfg["num_train"])]
        val = [a.numpy() for a in sample_measurements(A, 2, 1024)]
        for name in models:
            layer_flops = _forward_flops(name, m, n, 1, batch)
            for depth in sorted({1, T // 2, T}):
                for stage in (0, 1):
                    model = build_model(name, A, W, T)
                    trainer = ProgressiveTrainer(
                        model, train, val, progress=None, batch_size=batch,
                        jit_compile=not model_class(name).support_selection,
                        steps_per_epoch=measure_steps)
                    timers = {impl: _epoch_timer(trainer, depth, stage, impl)[0]
                              for impl in ("float", "where")}
                    run_layers = 1 if (stage == 0 and depth > 1) else depth
                    flops = 3 * layer_flops * run_layers
                    ms, over, cpu_ms, cpu_over = ({impl: [] for impl in timers}
                                                  for _ in range(4))
                    for _ in range(rounds):
                        peak, cpu_peak = rates()
                        for impl, run in timers.items():
                            step, cpu = run(cpu=True)
                            ms[impl].append(1e3 * step)
                            over[impl].append(step * peak / flops)
                            cpu_ms[impl].append(1e3 * cpu)
                            cpu_over[impl].append(cpu * cpu_peak / flops)
                    med = lambda d: {k: float(np.median(v)) for k, v in d.items()}  # noqa: E731
                    ratio = [a / b for a, b in zip(ms["float"], ms["where"])]
                    cpu_ratio = [a / b for a, b in zip(cpu_ms["float"], cpu_ms["where"])]
                    entry = {"size": size, "model": name, "depth": depth, "stage": stage + 1,
                             "ms": med(ms), "x_floor": med(over), "cpu_ms": med(cpu_ms),
                             "cpu_x_floor": med(cpu_over),
                             "ratio_float_where": float(np.median(ratio)),
                             "cpu_ratio_float_where": float(np.median(cpu_ratio)),
                             "ms_rounds": ms, "x_floor_rounds": over, "cpu_ms_rounds": cpu_ms,
                             "cpu_x_floor_rounds": cpu_over}
                    report["rows"].append(entry)
                    if progress:
                        progress(f"[perf] {size} {name:10s} depth {depth:2d} stage {stage + 1}"
                                 f": float {entry['ms']['float']:7.2f} ms/step "
                                 f"({entry['x_floor']['float']:.2f}x floor), boolean masks "
                                 f"{entry['ms']['where']:7.2f} ms/step "
                                 f"({entry['x_floor']['where']:.2f}x floor); float/where "
                                 f"{entry['ratio_float_where']:.3f}; CPU time: float "
                                 f"{entry['cpu_ms']['float']:.2f} ms "
                                 f"({entry['cpu_x_floor']['float']:.2f}x floor), boolean "
                                 f"{entry['cpu_ms']['where']:.2f} ms "
                                 f"({entry['cpu_x_floor']['where']:.2f}x floor), float/where "
                                 f"{entry['cpu_ratio_float_where']:.3f} (medians of {rounds} "
                                 f"rounds)")
    return report


def benchmark_training(models=None, sizes=("quick", "paper"),
                       batch=128, measure_steps=20, epochs_per_stage=11, old=True,
                       progress=print):
    """The real progressive-training step, old trainer vs compiled epochs + stage-1 cache.

    For each size and model: ms per step at depths 1, T/2 and T for stage 1 (only the new
    layer trains; the new trainer starts from the cache) and stage 2 (all layers train),
    steps per second, and the fraction of the matmul floor (FLOPs counted as 3 x the
    forward matmuls of the layers the step runs, at the machine's measured matmul rate).
    ``cell`` extrapolates a whole cell: ``epochs_per_stage`` epochs of the size's steps per
    epoch in every stage (11 is the average of the recorded paper ALISTA run: 210,400
    steps / 48 stages / 400), step time linear in depth between the measured depths.
    ``models``: default :func:`training_models`.
    """
    from model_based.progressive import ProgressiveTrainer  # pylint: disable=import-outside-toplevel
    models = training_models() if models is None else models
    peak = matmul_flops()
    report = {"matmul_gflops": peak / 1e9, "rows": []}
    for size in sizes:
        cfg = TRAINING_SIZES[size]
        m, n, T = cfg["m"], cfg["n"], cfg["num_layers"]
        A = gaussian_matrix(m, n, 0)
        W = analytic_weight(A) if _needs_W(models) else None
        train = [a.numpy() for a in sample_measurements(A, 1, cfg["num_train"])]
        val = [a.numpy() for a in sample_measurements(A, 2, 1024)]
        for name in models:
            jit = not model_class(name).support_selection
            depths = sorted({1, T // 2, T})
            row = {"size": size, "model": name, "m": m, "n": n, "num_layers": T, "xla": jit,
                   "by_depth": []}
            layer_flops = _forward_flops(name, m, n, 1, batch)
            for depth in depths:
                for stage in (0, 1):
                    model = build_model(name, A, W, T)
                    trainer = ProgressiveTrainer(model, train, val, progress=None,
                                                 batch_size=batch, jit_compile=jit,
                                                 steps_per_epoch=measure_steps)
                    new, cache_s = _time_new_epoch(trainer, depth, stage, measure_steps)
                    before = _time_old_steps(trainer, depth, stage, measure_steps) if old \
                        else float("nan")
                    run_layers = 1 if (stage == 0 and depth > 1) else depth
                    floor_new = 3 * layer_flops * run_layers / peak
                    floor_old = 3 * layer_flops * depth / peak
                    entry = {"depth": depth, "stage": stage + 1, "old_ms": 1e3 * before,
                             "new_ms": 1e3 * new, "cache_s": cache_s,
                             "old_frac_floor": floor_old / before,
                             "new_frac_floor": floor_new / new,
                             "floor_new_ms": 1e3 * floor_new}
                    row["by_depth"].append(entry)
                    if progress:
                        progress(f"[perf] {size} {name:10s} depth {depth:2d} stage "
                                 f"{stage + 1}: old {entry['old_ms']:7.2f} ms/step "
                                 f"({100 * entry['old_frac_floor']:4.0f}% of floor), new "
                                 f"{entry['new_ms']:7.2f} ms/step "
                                 f"({100 * entry['new_frac_floor']:4.0f}% of floor "
                                 f"{entry['floor_new_ms']:.2f} ms)"
                                 + (f", cache {cache_s:.2f} s" if cache_s else ""))
            row.update(_cell_estimate(row["by_depth"], T, cfg["steps"] * epochs_per_stage,
                                      layer_flops, peak))
            report["rows"].append(row)
            if progress:
                progress(f"[perf] {size} {name}: a whole cell ({epochs_per_stage} epochs a "
                         f"stage): old {row['cell_old_s']:.0f} s, new {row['cell_new_s']:.0f} s "
                         f"({row['cell_old_s'] / row['cell_new_s']:.2f}x); "
                         f"{row['steps_per_s_old']:.1f} -> {row['steps_per_s_new']:.1f} "
                         f"steps/s; floor of the old schedule {row['floor_old_s']:.0f} s, of "
                         f"the new {row['floor_new_s']:.0f} s; new = "
                         f"{row['cell_new_s'] / row['floor_new_s']:.2f}x its floor, "
                         f"{row['cell_new_s'] / row['floor_old_s']:.2f}x the old floor")
    return report


def _interp(entries, stage, key, depth):
    pts = sorted((e["depth"], e[key]) for e in entries if e["stage"] == stage)
    return float(np.interp(depth, [p[0] for p in pts], [p[1] for p in pts]))


def _cell_estimate(entries, T, steps_per_stage, layer_flops, peak):
    old = new = floor_old = floor_new = 0.0
    for depth in range(1, T + 1):
        s1_old = _interp(entries, 1, "old_ms", depth) / 1e3
        s2_old = _interp(entries, 2, "old_ms", depth) / 1e3
        s1_new = _interp(entries, 1, "new_ms", depth) / 1e3
        s2_new = _interp(entries, 2, "new_ms", depth) / 1e3
        cache = _interp(entries, 1, "cache_s", depth) if depth > 1 else 0.0
        old += steps_per_stage * (s1_old + 2 * s2_old)
        new += steps_per_stage * (s1_new + 2 * s2_new) + cache
        floor_old += steps_per_stage * 3 * (3 * layer_flops * depth) / peak
        floor_new += steps_per_stage * (3 * layer_flops * (1 + 2 * depth)) / peak
    steps = 3 * T * steps_per_stage
    return {"cell_old_s": old, "cell_new_s": new, "floor_old_s": floor_old,
            "floor_new_s": floor_new, "steps_per_s_old": steps / old,
            "steps_per_s_new": steps / new}

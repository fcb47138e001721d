"""Speed of the unrolled models (``run.perf --what=model_based``).

For each model at m x n, T layers, batch b: the median time of one compiled training step
(forward + backward through all T layers + Adam on every variable) and the inference
throughput of the T-layer model, both also as a fraction of the machine's measured
float32 matmul throughput (model FLOPs counted from its matmuls).
"""
import numpy as np
import tensorflow as tf

from model_based.factory import build_model
from open_l2o_tf.data.alista_weight import analytic_weight
from open_l2o_tf.data.sparse_recovery import gaussian_matrix, sample_measurements
from open_l2o_tf.perf_utils import matmul_flops, median_time

DEFAULT_MODELS = ("lista", "lista_cp", "lista_cpss", "alista", "lamp", "lfista", "glista",
                  "tista")


def _forward_flops(name, m, n, T, b):
    per_layer = {"lista": 2 * b * n * n, "lfista": 4 * b * n * n}.get(name, 4 * b * m * n)
    return T * per_layer


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


def benchmark_model_based(models=DEFAULT_MODELS, m=256, n=512, num_layers=16, batch=128,
                          repeats=10, jit_compile="both", progress=print):
    peak = matmul_flops()
    A = gaussian_matrix(m, n, 0)
    W = analytic_weight(A) if "alista" in models else None
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

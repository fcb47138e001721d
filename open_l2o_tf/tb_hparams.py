"""A run's flags and figures in TensorBoard's HParams dashboard: every command logs its
``results.json`` record (:func:`log_results`) so a folder of runs is one table."""
import math

from open_l2o_tf.logging import RESULT_KEYS, TensorBoard


def result_metrics(record):
    """The figures of a ``results.json`` record (:func:`make_result`) that TensorBoard's
    HParams table shows: ``final/<metric>`` (the curve's last value: the loss at the last
    step, R at the last iteration, NMSE at the last layer), ``final/train_seconds``,
    ``final/train_steps`` and every other top-level number of the record (e.g.
    ``final/second_half_mean``)."""
    out = {}
    final = record.get("final")
    if final is not None and record.get("metric"):
        out[f"final/{record['metric']}"] = float(final)
    for key in ("train_seconds", "train_steps"):
        if isinstance(record.get(key), (int, float)):
            out[f"final/{key}"] = float(record[key])
    for key, value in record.items():
        if key in RESULT_KEYS or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[f"final/{key}"] = float(value)
    return out


def log_results(logdir, record):
    """Logs a ``results.json`` record to the TensorBoard folder ``logdir`` (the command's
    ``WORKDIR/tb``): its ``config`` (the flags) as hyperparameters, once, and its figures
    (:func:`result_metrics`) as scalars at step ``train_steps`` (a run that writes its
    results after each layer or epoch updates them; the table shows the last)."""
    tb = TensorBoard.for_dir(logdir)
    metrics = result_metrics(record)
    config = dict(record.get("config") or {})
    for key in ("test", "method", "setting", "preset", "metric"):
        if isinstance(record.get(key), str):
            config.setdefault(key, record[key])
    tb.scalars(metrics, int(record.get("train_steps") or 0))
    tb.hparams(config, sorted(metrics))
    tb.flush()
    return tb

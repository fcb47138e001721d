"""Out-of-distribution benchmark of Safe-L2O: plain learned vs safeguarded learned vs FISTA.

    python -m run.ood --load=RUN/model.keras --workdir=W
    python -m run.ood --load=RUN/model.keras --shifts=sparsity,noisy --iterations=300

A model trained by ``run.sparse_recovery`` on the Gaussian noiseless setting (``--load``) is
tested, at equal iterations ``k = 0 .. --iterations`` (the model repeats its last layer past
its trained depth), on:

* ``in_distribution``: fresh test data of the training setting (same ``A``, ``p = 0.1``);
* ``sparsity``: Bernoulli-Gaussian codes with ``p = --shift_sparsity`` (0.2);
* ``noisy``: measurements with ``--shift_snr_db`` (20 dB) noise;
* ``coherent``: a coherent dictionary of the model's size (``--dictionary=D.npy``, or
  learned from ``--image_dir`` patches, cached as ``WORKDIR/coherent_A.npy``);
* ``gaussian_A``: another Gaussian ``A`` (seed ``--seed + 1000``).

With another ``A`` the model's own ``A`` (the one in its residual ``y - A x``) is replaced
by the test ``A``; its learned weights stay as trained.  The safeguard (``--safeguard_*``
flags, :mod:`model_based.safeguard`) uses ISTA's operator on the test problem with
``--safeguard_lam``.  Writes ``results.json`` (one entry per shift under ``shifts``, with
the curves, rejection counts, iterations to each ``--targets`` NMSE and the two checks
below), ``ood_<shift>.png`` and, per finished shift, ``shifts/<shift>.json`` (a re-run
resumes).

Checks printed per shift: the share of the learned model's advantage over FISTA in
iterations to the target NMSE that the safeguarded model keeps, and, at the iterations
where the plain model is worse than FISTA, how far the safeguarded model is above FISTA in
NMSE; and the largest relative excess of its mean Lasso objective over FISTA's at any
iteration (at most 0 with the default ``--safeguard_shadow=best`` and
``--safeguard_energy=objective``: the shadow bounds it per instance).
"""
import os

import numpy as np
from absl import flags

from open_l2o_tf import logging as olog
from open_l2o_tf import registry
from open_l2o_tf.errors import UserError
from . import common

# the model names; their modules (TensorFlow) wait until the flags are checked
# (common.quiet_tensorflow_import imports them)
with registry.deferred_imports(__name__ == "__main__"):
    import model_based  # noqa: F401,E402  pylint: disable=wrong-import-position,unused-import

SHIFTS = ["in_distribution", "sparsity", "noisy", "coherent", "gaussian_A"]
flags.DEFINE_list("shifts", SHIFTS, f"Test settings, any of {', '.join(SHIFTS)}.")
flags.DEFINE_integer("iterations", 200, "Iterations of every method.", lower_bound=1)
flags.DEFINE_integer("num_test", 1024, "Test problems per shift.", lower_bound=1)
flags.DEFINE_float("shift_sparsity", 0.2, "Probability of a non-zero in the sparsity shift.")
flags.DEFINE_float("shift_snr_db", 20.0, "SNR (dB) of the noisy shift.")
flags.DEFINE_string("dictionary", None, "Coherent shift: an (m, n) .npy dictionary.")
flags.DEFINE_string("image_dir", None, "Coherent shift without --dictionary: natural "
                    "images to learn one from (default $OPEN_L2O_DATA_DIR/bsds500, else "
                    "../shared/data/bsds500).")
flags.DEFINE_list("targets", ["-20", "-30"], "Target NMSEs (dB) for iterations-to-target.")
flags.DEFINE_float("tolerance_db", 0.1, "Slack (dB) when counting iterations where the "
                   "safeguarded model is worse than FISTA.")
flags.register_validator("shift_sparsity", lambda v: 0.0 < v <= 1.0,
                         message="--shift_sparsity must be in (0, 1]")
common.define_safeguard_flags(with_switch=False)
common.define_sparse_safeguard_flags()
common.define_common_flags("runs/ood")
FLAGS = flags.FLAGS


def model_with_A(model, A):
    """A copy of the unrolled ``model`` whose ``A`` is ``A`` (same learned weights; other
    stored matrices, e.g. ALISTA's ``W``, stay as trained)."""
    new = type(model).from_config(model.get_config())
    new.set_weights(model.get_weights())
    new.A_weight.assign(np.asarray(A, np.float32))
    new.refresh_fixed()
    return new


def coherent_dictionary(m, n, workdir):
    from open_l2o_tf.data import dictionary as dictionary_lib  # pylint: disable=import-outside-toplevel
    from open_l2o_tf.data import sparse_recovery  # pylint: disable=import-outside-toplevel
    if FLAGS.dictionary:
        if not os.path.exists(FLAGS.dictionary):
            raise UserError(f"--dictionary file {FLAGS.dictionary} does not exist")
        try:
            D = np.load(FLAGS.dictionary, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise UserError(f"--dictionary {FLAGS.dictionary} is not a .npy array "
                            f"({type(err).__name__})") from None
        if D.shape != (m, n):
            raise UserError(f"--dictionary {FLAGS.dictionary} has shape {D.shape}, the model "
                            f"needs ({m}, {n})")
        return sparse_recovery.normalise_columns(D, f"--dictionary {FLAGS.dictionary}")
    cache = os.path.join(workdir, "coherent_A.npy")
    if os.path.exists(cache):
        try:
            D = np.load(cache, allow_pickle=False)
            if D.shape != (m, n) or D.dtype.kind != "f" or not np.isfinite(D).all():
                raise ValueError(f"shape {D.shape} {D.dtype}, expected ({m}, {n}) finite")
            return D
        except Exception as err:  # pylint: disable=broad-except
            print(f"[ood] warning: {cache} cannot be read ({type(err).__name__}); learning "
                  f"the dictionary again", flush=True)
    image_dir = image_dir_flag()
    print(f"[ood] learning a {m}x{n} dictionary from {image_dir}", flush=True)
    D, _ = dictionary_lib.dictionary_from_images(image_dir, m, n, seed=FLAGS.seed)
    D = sparse_recovery.normalise_columns(D)
    olog.atomic_save_npy(cache, D)
    return D


def shift_problem(shift, A0, workdir):
    """``(A, y, x, description)`` of one shift."""
    from open_l2o_tf.data import sparse_recovery  # pylint: disable=import-outside-toplevel
    m, n = A0.shape
    A, p, snr, what = A0, 0.1, None, "same A, p = 0.1, noiseless"
    if shift == "sparsity":
        p, what = FLAGS.shift_sparsity, f"same A, p = {FLAGS.shift_sparsity}"
    elif shift == "noisy":
        snr, what = FLAGS.shift_snr_db, f"same A, SNR {FLAGS.shift_snr_db} dB"
    elif shift == "coherent":
        A = coherent_dictionary(m, n, workdir)
        from open_l2o_tf.data.dictionary import mutual_coherence  # pylint: disable=import-outside-toplevel
        what = f"coherent dictionary (mutual coherence {mutual_coherence(A):.3f})"
    elif shift == "gaussian_A":
        A = sparse_recovery.gaussian_matrix(m, n, [(FLAGS.seed + 1000) & 0x7FFFFFFF, 0])
        what = "another Gaussian A"
    rows = sparse_recovery.make_split(A, FLAGS.seed * 7919 + 31 + SHIFTS.index(shift),
                                      FLAGS.num_test, p, snr)
    return A, rows[:, :m], rows[:, m:], what


def checks(result, targets, tolerance):
    """The two numbers of the closing note for one shift."""
    curves = result["curves"]
    fallback = result["fallback"]
    floats = lambda v: np.array([np.nan if x is None else x for x in v], np.float64)  # noqa: E731
    learned = floats(curves["learned"])
    learned = np.where(np.isfinite(learned), learned, np.inf)
    safe, classic = floats(curves["safeguarded"]), floats(curves[fallback])
    from model_based.safeguard import iterations_to  # pylint: disable=import-outside-toplevel
    kept = {}
    for t in targets:
        it = {k: iterations_to(c, t) for k, c in (("learned", learned), ("safeguarded", safe),
                                                   (fallback, classic))}
        share = None
        if it["learned"] is not None and it[fallback] is not None \
                and it[fallback] > it["learned"] and it["safeguarded"] is not None:
            share = (it[fallback] - it["safeguarded"]) / (it[fallback] - it["learned"])
        kept[str(t)] = {"iterations": it, "advantage_kept": share}
    worse_plain = learned[1:] > classic[1:]
    excess = (safe[1:] - classic[1:])[worse_plain]
    objective = result["objective"]
    obj_safe, obj_classic = floats(objective["safeguarded"]), floats(objective[fallback])
    obj_excess = (obj_safe[1:] - obj_classic[1:]) / obj_classic[1:]
    return {"targets": kept,
            "iterations_plain_worse_than_classic": int(worse_plain.sum()),
            "max_excess_db_there": float(excess.max()) if excess.size else None,
            "iterations_safeguarded_worse_there": int((excess > tolerance).sum()),
            "max_excess_db_anywhere": float((safe[1:] - classic[1:]).max()),
            # the mean Lasso objective, relative: the shadow bounds it per instance
            "max_objective_excess_relative": float(obj_excess.max())}


def targets_flag():
    try:
        targets = [float(t) for t in FLAGS.targets]
    except ValueError:
        raise UserError(f"--targets must be numbers (dB), got {','.join(FLAGS.targets)}") \
            from None
    for text, value in zip(FLAGS.targets, targets):
        problem = common.float_problem(value)
        if problem:
            raise UserError(f"--targets: {text} {problem}")
    return targets


def image_dir_flag():
    """The coherent shift's image folder: --image_dir, $OPEN_L2O_DATA_DIR/bsds500 or
    ../shared/data/bsds500 (checked)."""
    return common.find_image_dir(FLAGS.image_dir, other="--dictionary=D.npy, or leave out "
                                 "the coherent shift (--shifts)")


def validate():
    """Checks that need no TensorFlow: --shifts, --targets, --load, the safeguard options,
    --dictionary, the images of the coherent shift, the workdir and the run's identity
    (the --load file's digest: another model is refused in the same workdir)."""
    for shift in FLAGS.shifts:
        if shift not in SHIFTS:
            raise UserError(f"--shifts: unknown shift {shift!r}; expected any of "
                            f"{', '.join(SHIFTS)}")
    targets_flag()
    if not FLAGS.load:
        raise UserError("--load is required: a model.keras written by run.sparse_recovery")
    from open_l2o_tf.keras_files import check_unrolled_file  # pylint: disable=import-outside-toplevel
    check_unrolled_file(FLAGS.load)
    common.check_safeguard_flags(["ista", "fista"], "fista")
    if FLAGS.dictionary and not os.path.isfile(FLAGS.dictionary):
        raise UserError(f"--dictionary file {FLAGS.dictionary} does not exist")
    if ("coherent" in FLAGS.shifts and not FLAGS.dictionary
            and not os.path.exists(os.path.join(FLAGS.workdir, "coherent_A.npy"))):
        image_dir_flag()
    # --shifts, --targets and --tolerance_db may change between re-runs: each shift's
    # result is kept (shifts/) with its own settings, the checks are recomputed
    common.prepare_workdir(FLAGS.workdir, extra={"load": common.data_digest_of_file(FLAGS.load)},
                           ignore=("shifts", "targets", "tolerance_db"), state_dirs=("shifts",))


def main(argv):
    del argv
    from model_based import safeguard as msg  # pylint: disable=import-outside-toplevel
    from model_based.factory import load_unrolled  # pylint: disable=import-outside-toplevel
    from open_l2o_tf import plotting  # pylint: disable=import-outside-toplevel
    targets = targets_flag()
    rule = common.safeguard_rule_from_flags()
    fallback = common.safeguard_fallback_flag(["ista", "fista"], "fista")
    model = load_unrolled(FLAGS.load)
    workdir = FLAGS.workdir
    os.makedirs(os.path.join(workdir, "shifts"), exist_ok=True)
    name = type(model).__name__
    shifts = {}
    for shift in FLAGS.shifts:
        path = os.path.join(workdir, "shifts", f"{shift}.json")
        config = {**rule.config(), "fallback": fallback, "lam": FLAGS.safeguard_lam,
                  "energy": FLAGS.safeguard_energy, "shadow": FLAGS.safeguard_shadow,
                  "iterations": FLAGS.iterations,
                  "num_test": FLAGS.num_test, "load": os.path.abspath(FLAGS.load)}
        try:
            done = olog.read_json(path)
        except UserError:
            print(f"[ood] warning: {path} cannot be read (not JSON); redoing the {shift} "
                  f"shift", flush=True)
            done = None
        if isinstance(done, dict) and done.get("config") == config:
            print(f"[ood] {shift}: already done ({path})", flush=True)
            try:
                done["checks"] = checks(done, targets, FLAGS.tolerance_db)
                shifts[shift] = done
                continue
            except (KeyError, TypeError, ValueError) as err:
                print(f"[ood] warning: {path} is not a complete result ({type(err).__name__}"
                      f"); redoing the {shift} shift", flush=True)
        A, y, x, what = shift_problem(shift, model.A_np, workdir)
        test_model = model if A is model.A_np else model_with_A(model, A)
        print(f"[ood] {shift}: {what}; {len(y)} problems {A.shape[0]}x{A.shape[1]}",
              flush=True)
        result = msg.compare(test_model, y, FLAGS.iterations, rule, A=A,
                             lam=FLAGS.safeguard_lam, x_true=x,
                             energy=FLAGS.safeguard_energy, fallback=fallback,
                             shadow=FLAGS.safeguard_shadow)
        result.update(description=what, config=config,
                      checks=checks(result, targets, FLAGS.tolerance_db))
        common.print_safeguard(result)
        n = result["instances"]
        plotting.plot_safeguard(result["curves"], os.path.join(workdir, f"ood_{shift}.png"),
                                rejected=[r / n for r in result["rejected"]],
                                trained_depth=model.num_layers, title=f"{name}: {what}")
        print_checks(shift, result["checks"], fallback)
        olog.atomic_write_json(path, result)
        shifts[shift] = result
    record = olog.make_result("safeguard_ood", name, "+".join(FLAGS.shifts), FLAGS.preset,
                              "nmse_db", [], config=common.flag_values_dict(), shifts=shifts)
    common.write_results(workdir, record)
    print(f"[ood] wrote {os.path.join(workdir, 'results.json')}", flush=True)


def print_checks(shift, c, fallback):
    for t, v in c["targets"].items():
        it = v["iterations"]
        share = "n/a" if v["advantage_kept"] is None else f"{100 * v['advantage_kept']:.0f} %"
        print(f"[ood] {shift}: iterations to {t} dB: learned {it['learned']}, safeguarded "
              f"{it['safeguarded']}, {fallback} {it[fallback]}; advantage kept {share}")
    excess = c["max_excess_db_there"]
    print(f"[ood] {shift}: plain learned worse than {fallback} at "
          f"{c['iterations_plain_worse_than_classic']} iterations; there the safeguarded "
          f"model is worse than {fallback} by more than the tolerance at "
          f"{c['iterations_safeguarded_worse_there']} (max excess "
          f"{'n/a' if excess is None else f'{excess:.2f} dB'}; anywhere "
          f"{c['max_excess_db_anywhere']:.2f} dB); mean objective at most "
          f"{c['max_objective_excess_relative']:+.2e} relative to {fallback}'s", flush=True)


if __name__ == "__main__":
    common.main_wrapper(main, validate)

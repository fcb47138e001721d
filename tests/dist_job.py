"""Tiny seeded training jobs under a tf.distribute strategy, for tests/test_distribute.py.

    DIST_JOBS=progressive,meta python -m tests.dist_job STRATEGY CPU_REPLICAS WORKDIR

With ``DIST_REFERENCE=1`` the same jobs also run on one device (no strategy) first, in
the same process.  Runs in its own process (logical CPU devices and collectives are
configured once per process, before TensorFlow initialises its devices) and prints one JSON
line ``RESULT {...}``.  JOBS (comma-separated, default all but ``resume`` and ``meta``):

* ``progressive``: LISTA, 2 layers, on 16x32 sparse recovery (batch 32, 6 steps per epoch,
  2 epochs per stage); the per-layer test NMSE (dB) and the final weights' checksum;
* ``resume``: the same run interrupted after layer 1 (checkpoint written by the chief),
  continued by a new trainer (the chief reads the checkpoint and broadcasts it); also
  interrupts the meta-training jobs after episode 2 the same way;
* ``meta``: L2O-DM meta-trained 4 episodes on 8-instance quadratics (2 truncations of 2
  steps), the held-out score of the final weights, their checksum and the distance they
  moved from the initial ones;
* ``scale``: L2O-Scale as ``run.rastrigin`` meta-trains it (log-ratio objective, TF1
  RMSProp, clipping, state carried across episodes; meta_lr 1e-3) 3 episodes (2
  truncations of 2 steps) on 8-instance Rastrigin n = 2, the same outputs;
* ``enhanced``: L2O-DM with imitation episodes (probability 0.5) as ``meta``, and the
  imitation episodes' losses;
* ``nn``: L2O-DM meta-trained 2 episodes on one tiny MLP (6x6 images, 4 hidden units,
  minibatch 16: the minibatch split over the replicas);
* ``swarm``: L2O-Swarm (hidden 8) 3 episodes on 8-instance Rastrigin n = 2 (2 truncations
  of 2 steps), scored on 4 held-out instances; ``twin``: Twin-L2O (hidden 8) 3 epochs on
  8 saddle games (dim 2, 2 truncations of 2 half-steps), scored on 4 held-out games over
  20 half-steps; the best (selected) held-out score, the distance moved and the history's
  length (episode losses, evaluated episodes).
"""
import json
import os
import resource
import sys
import time


def main():
    start = time.time()
    strategy_name, cpu_replicas, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jobs = os.environ.get("DIST_JOBS",
                          "progressive,scale,enhanced,nn,swarm,twin").split(",")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from open_l2o_tf import distribute  # pylint: disable=import-outside-toplevel
    strategy = distribute.make_strategy(
        strategy_name, cpu_replicas if strategy_name == "mirrored" else None)
    results = {}
    if os.environ.get("DIST_REFERENCE"):      # the single-device run, in the same process
        results["reference"] = run(None, os.path.join(workdir, "reference"), jobs)
    results["run"] = run(strategy, workdir, jobs)
    results["seconds"] = time.time() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print("RESULT " + json.dumps(results), flush=True)


def run(strategy, workdir, jobs):
    """The jobs under ``strategy`` (None: one device); returns the outputs."""
    from open_l2o_tf import distribute  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.get_logger().setLevel("ERROR")
    out = {"replicas": distribute.num_replicas(strategy),
           "chief": distribute.is_chief(strategy)}
    if "progressive" in jobs or "resume" in jobs:
        from model_based import progressive  # pylint: disable=import-outside-toplevel
        from model_based.factory import build_model  # pylint: disable=import-outside-toplevel
        from open_l2o_tf.data import sparse_recovery  # pylint: disable=import-outside-toplevel
        A = sparse_recovery.gaussian_matrix(16, 32, 0)
        split = lambda seed, num: [  # noqa: E731
            a.numpy() for a in sparse_recovery.sample_measurements(A, seed, num)]
        train, val, test = split(1, 256), split(2, 128), split(3, 128)

        def trainer(ckpt, layers=2):
            keras.utils.set_random_seed(0)
            model = build_model("lista", A, None, 2)
            return model, progressive.ProgressiveTrainer(
                model, train, val, test, batch_size=32, val_batch_size=128,
                steps_per_epoch=6, max_epochs=2, patience=2, ckpt_dir=ckpt, progress=None,
                seed=0, jit_compile=False, strategy=strategy)

        def checksum(model):
            return float(sum(np.abs(v.numpy()).sum() for v in model.trainable_variables))

        if "progressive" in jobs:
            model, t = trainer(None)
            out["nmse"] = t.train(2)
            out["weights"] = checksum(model)
        if "resume" in jobs:
            ckpt = os.path.join(workdir, "ckpt")
            _, t = trainer(ckpt)
            t.train(1)                      # "interrupted" after layer 1
            model, t = trainer(ckpt)        # a new process would do the same
            out["resume_nmse"] = t.train(2)
            out["resume_weights"] = checksum(model)
            out["ckpt_files"] = sorted(os.listdir(ckpt)) if os.path.isdir(ckpt) else []
    from model_free.meta.meta_trainer import MetaTrainer  # pylint: disable=import-outside-toplevel

    def meta(name, opt, family, episodes, truncation=2, **kw):
        def make():
            return MetaTrainer(opt, family, unroll=2 * truncation, truncation=truncation,
                               eval_every=2,
                               eval_instances=1, selection="horizon_mean", progress=None,
                               seed=0, strategy=strategy,
                               ckpt_dir=os.path.join(workdir, name + "_ckpt"), **kw)
        trainer = make()
        initial = trainer.weights()
        if "resume" in jobs:         # interrupted after episode 2, a new trainer resumes
            trainer.train(2)
            trainer = make()
        trainer.train(episodes)
        out[name + "_score"] = trainer.score()
        out[name + "_weights"] = float(sum(np.abs(w).sum() for w in trainer.weights()))
        out[name + "_moved"] = float(np.sqrt(sum(np.sum((w - w0) ** 2) for w, w0 in
                                                 zip(trainer.weights(), initial))))
        return trainer

    if "meta" in jobs:
        from model_free.rules.dm import L2ODM  # pylint: disable=import-outside-toplevel
        from open_l2o_tf.optimizees.quadratic import Quadratic  # pylint: disable=import-outside-toplevel
        keras.utils.set_random_seed(0)
        meta("meta", L2ODM(preprocess="identity", output_scale=1.0),
             Quadratic(dim=4, batch_size=8), 4)
    if "scale" in jobs:
        from model_free.rules.scale import L2OScale, tf1_rmsprop  # pylint: disable=import-outside-toplevel
        from open_l2o_tf.optimizees.rastrigin import Rastrigin  # pylint: disable=import-outside-toplevel
        keras.utils.set_random_seed(0)
        opt = L2OScale(batched_instances=True)
        full = meta("scale", opt, Rastrigin(n=2, batch_size=8), 3,
                    meta_objective="log_ratio", clip_value=1e4, carry_state=True,
                    meta_optimizer=tf1_rmsprop(1e-3, opt))
        if strategy is not None and not distribute.multi_process(strategy):
            # the same 3 episodes: 2, the checkpoint, a new trainer for the third (the
            # carried state is per replica and in the checkpoint: an exact resume)
            for stop in (2, 3):     # the first part from the same weights as `full`
                keras.utils.set_random_seed(0 if stop == 2 else 1)
                opt = L2OScale(batched_instances=True)
                trainer = MetaTrainer(
                    opt, Rastrigin(n=2, batch_size=8), unroll=4, truncation=2,
                    eval_every=2, eval_instances=1, selection="horizon_mean",
                    progress=None, seed=0, strategy=strategy, meta_objective="log_ratio",
                    clip_value=1e4, carry_state=True, meta_optimizer=tf1_rmsprop(1e-3, opt),
                    ckpt_dir=os.path.join(workdir, "scale_resume_ckpt"))
                trainer.train(stop)
            pairs = list(zip(full.weights() + [v.numpy() for v in full.meta_opt.variables],
                             trainer.weights() + [v.numpy() for v in
                                                  trainer.meta_opt.variables]))
            for a, b in zip(tf.nest.flatten(full.carried.state), tf.nest.flatten(trainer.carried.state)):
                pairs += list(zip(strategy.experimental_local_results(a),
                                  strategy.experimental_local_results(b)))
            out["scale_resume_max_diff"] = max(float(np.max(np.abs(np.asarray(a) -
                                                                   np.asarray(b))))
                                               for a, b in pairs)
            out["scale_resume_carried_steps"] = [
                float(t) for t in strategy.experimental_local_results(trainer.carried.state[-1])]
    if "enhanced" in jobs:     # L2O-DM with imitation episodes (split by coordinates)
        from model_free.meta.imitation import Imitation  # pylint: disable=import-outside-toplevel
        from model_free.rules.dm import L2ODM  # pylint: disable=import-outside-toplevel
        from open_l2o_tf.optimizees.quadratic import Quadratic  # pylint: disable=import-outside-toplevel
        keras.utils.set_random_seed(0)
        imitation, seen = Imitation("dm", probability=0.5, seed=0), []
        plain = imitation.train_episode
        imitation.train_episode = lambda *a, **k: seen.append(plain(*a, **k)) or seen[-1]
        meta("enhanced", L2ODM(preprocess="identity", output_scale=1.0),
             Quadratic(dim=4, batch_size=8), 4, imitation=imitation)
        out["enhanced_imitation_losses"] = seen
    if "nn" in jobs:           # one network: the minibatch split over the replicas
        from model_free.rules.dm import L2ODM  # pylint: disable=import-outside-toplevel
        from open_l2o_tf.optimizees.networks import MnistMLP  # pylint: disable=import-outside-toplevel
        rng = np.random.default_rng(0)
        keras.utils.set_random_seed(0)
        meta("nn", L2ODM(), MnistMLP(rng.random((64, 6, 6, 1), np.float32),
                                     rng.integers(0, 10, 64), hidden=4, batch_size=16), 2)
    def episodic(name, make, episodes):
        """A SwarmTrainer / TwinTrainer ``make(ckpt_dir)`` on a fresh seeded network; with
        ``resume`` in the jobs interrupted after episode 2 (the chief's checkpoint) and
        continued by a new trainer on a new network, as a restarted process would."""
        ckpt = os.path.join(workdir, name + "_ckpt")
        trainer = make(ckpt)
        initial = [w.numpy() for w in trainer.model.weights]
        if "resume" in jobs:
            trainer.train(2)
            trainer = make(ckpt)
        trainer.train(episodes)
        out[name + "_score"] = trainer.best_score    # the selected weights' held-out score
        out[name + "_history"] = [len(trainer.history["loss"]),
                                  [e for e, _ in trainer.history["eval"]]]
        out[name + "_moved"] = float(np.sqrt(sum(
            np.sum((w.numpy() - w0) ** 2) for w, w0 in zip(trainer.model.weights, initial))))

    if "swarm" in jobs:
        from model_free.rules import swarm as swarm_lib  # pylint: disable=import-outside-toplevel
        from open_l2o_tf.optimizees.rastrigin import Rastrigin  # pylint: disable=import-outside-toplevel

        def make_swarm(ckpt):
            keras.utils.set_random_seed(0)
            return swarm_lib.SwarmTrainer(
                swarm_lib.L2OSwarm(dim=2, hidden=8), Rastrigin(n=2, batch_size=8), unroll=4,
                truncation=2, eval_every=2, eval_instances=4, progress=None, seed=0,
                ckpt_dir=ckpt, strategy=strategy)
        episodic("swarm", make_swarm, 3)
    if "twin" in jobs:
        from model_free.rules import twin as twin_lib  # pylint: disable=import-outside-toplevel
        from open_l2o_tf.optimizees.minimax import Saddle  # pylint: disable=import-outside-toplevel

        def make_twin(ckpt):
            keras.utils.set_random_seed(0)
            return twin_lib.TwinTrainer(
                twin_lib.TwinL2O(hidden=8), Saddle(dim=2, batch_size=8), iterations=4,
                truncation=2, meta_lr=1e-2, eval_every=3, eval_instances=4, eval_half_steps=20,
                progress=None, seed=0, ckpt_dir=ckpt, strategy=strategy)
        episodic("twin", make_twin, 3)
    return out


if __name__ == "__main__":
    main()

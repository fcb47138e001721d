"""The shared pieces of the command lines, one import for a command module.

The pieces live by concern; this module only gathers their public names:

* :mod:`run.startup`: ``--import``, the quiet TensorFlow import, signals and the one-line
  errors of :func:`main_wrapper` / :func:`run_in_process`;
* :mod:`run.shared_flags`: flag definitions every command shares (``--workdir``,
  ``--preset``, the meta-training flags, ``--model`` / ``--optimizer`` from the registry)
  and the flag values a run records;
* :mod:`run.strategy_setup`: ``--strategy`` / ``--deterministic``;
* :mod:`run.workdir`: the workdir lock, ``run.json`` (the run's identity), file checks;
* :mod:`run.safeguard_flags`: the Safe-L2O flags and comparison pieces.
"""
from open_l2o_tf.errors import UserError  # noqa: F401  (commands raise it)
from .safeguard_flags import (SAFEGUARD_FALLBACKS, check_safeguard_flags,  # noqa: F401
                              define_safeguard_flags, define_sparse_safeguard_flags,
                              lasso_safeguard_record, print_safeguard, rastrigin_safeguard,
                              safeguard_fallback_flag, safeguard_options,
                              safeguard_rule_from_flags, sparse_safeguard)
from .shared_flags import (bound_flags, define_common_flags, define_load_flag,  # noqa: F401
                           check_meta_training_flags, define_meta_flags, define_meta_lr_flag,
                           define_method_flag,
                           define_model_selection_flag, define_strategy_flags,
                           flag_values_dict, float_flags, float_problem, meta_lr,
                           preset_value)
from .startup import (USER_NAMES, Terminated, as_invoked, import_user_modules,  # noqa: F401
                      install_signal_handlers, interrupt_line, main_wrapper,
                      quiet_tensorflow_import, run_in_process, seed_everything)
from .strategy_setup import check_strategy_flags, deterministic, strategy  # noqa: F401
from .workdir import (IDENTITY_IGNORED, LOCK_FILE, RUN_FILE, check_data_dir,  # noqa: F401
                      check_load_flag, check_run_identity, check_workdir,
                      DATA_ARRAYS, data_digest, data_digest_of_file, data_identity,
                      find_image_dir,
                      check_writable_file, lock_workdir, prepare_workdir,
                      read_test_runs, release_workdir_locks, resumable_runs, run_identity,
                      write_results)

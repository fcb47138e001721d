"""ISTA and FISTA for a batch of Lasso problems ``min_x 1/2 ||A x - y||^2 + lam ||x||_1``.

ISTA (Daubechies, Defrise & De Mol 2004):
``x_{k+1} = eta_{lam/L}(x_k - (1/L) A^T (A x_k - y))`` with the soft threshold
``eta_theta(z) = sign(z) max(|z| - theta, 0)`` and ``L = ||A||_2^2``.

FISTA (Beck & Teboulle 2009): ``t_1 = 1``, ``z_1 = x_0``,
``x_k = eta_{lam/L}(z_k - (1/L) A^T (A z_k - y))``, ``t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2``,
``z_{k+1} = x_k + ((t_k - 1) / t_{k+1}) (x_k - x_{k-1})``.

Step size (:func:`step_size`): ``"spectral"``, ``1/||A||_2^2`` (``1/L``, the largest step
with the classic guarantee; the default of these functions), or ``"frobenius"``,
``1/||A||_F^2`` (``||A||_F^2 >= ||A||_2^2``: a smaller safe step).  The paper's Fig. 6 ISTA
and FISTA values are reproduced with the Frobenius step (25x50: ISTA R[1000] 0.558 vs the
paper's 0.55, FISTA 5.5e-5 vs 6e-5; 5x10: 0.157 vs 0.15), not with the spectral one (ISTA
0.061, FISTA 1.4e-7), so ``run.lasso`` uses it by default (``--ista_step``).  The original
release has no Lasso ISTA/FISTA script to confirm this; it is inferred from the figure.

These are the ISTA/FISTA baselines of Open-L2O (Chen et al., JMLR 2022, Fig. 6), where
``f*`` of the modified relative loss (19) comes from 2,000 FISTA iterations
(:func:`lasso_fstar`).  ``A`` is either shared, ``(m, n)``, or one matrix per instance,
``(B, m, n)``; ``y`` is ``(B, m)``.  The iterations run in a ``tf.while_loop`` inside one
``tf.function``.
"""
import tensorflow as tf

from open_l2o_tf.errors import UserError, require, require_positive_int


def _prepare(A, y, lam, x0, dtype):
    A = tf.convert_to_tensor(A, dtype)
    y = tf.convert_to_tensor(y, dtype)
    if A.shape.rank not in (2, 3):
        raise UserError(f"A must have shape (m, n) or (B, m, n), got {A.shape}")
    if y.shape.rank != 2 or y.shape[-1] != A.shape[-2]:
        raise UserError(f"y must have shape (B, m) with m = {A.shape[-2]}, got {y.shape}")
    if A.shape.rank == 3 and A.shape[0] != y.shape[0]:
        raise UserError(f"A of shape {A.shape} has {A.shape[0]} instances but y has "
                        f"{y.shape[0]}")
    n = A.shape[-1]
    if x0 is None:
        x0 = tf.zeros([tf.shape(y)[0], n], dtype)
    else:
        x0 = tf.convert_to_tensor(x0, dtype)
        if x0.shape.rank != 2 or x0.shape[-1] != n or x0.shape[0] != y.shape[0]:
            raise UserError(f"x0 must have shape ({y.shape[0]}, {n}), got {x0.shape}")
    require(float(lam) >= 0.0, f"lam must be >= 0, got {lam!r}")
    return A, y, tf.cast(lam, dtype), x0


def lipschitz_constant(A):
    """``L = ||A||_2^2`` (largest singular value squared): a scalar for ``(m, n)``,
    ``(B, 1)`` for ``(B, m, n)``."""
    A = tf.convert_to_tensor(A)
    s = tf.linalg.svd(A, compute_uv=False)
    L = tf.square(s[..., 0])
    return L[:, None] if A.shape.rank == 3 else L


STEP_RULES = ("spectral", "frobenius")


def step_size(A, rule="spectral"):
    """``1/||A||_2^2`` (``rule="spectral"``) or ``1/||A||_F^2`` (``"frobenius"``): a scalar
    for ``(m, n)``, ``(B, 1)`` for ``(B, m, n)``."""
    if rule not in STEP_RULES:
        raise UserError(f"step rule must be one of {STEP_RULES}, got {rule!r}")
    A = tf.convert_to_tensor(A)
    if rule == "spectral":
        return 1.0 / lipschitz_constant(A)
    fro = tf.reduce_sum(tf.square(A), axis=[-2, -1])
    return 1.0 / (fro[:, None] if A.shape.rank == 3 else fro)


def _ops(A):
    if A.shape.rank == 3:
        return (lambda x: tf.einsum("bmn,bn->bm", A, x),
                lambda r: tf.einsum("bmn,bm->bn", A, r))
    return (lambda x: tf.matmul(x, A, transpose_b=True), lambda r: tf.matmul(r, A))


def soft_threshold(z, theta):
    """``sign(z) max(|z| - theta, 0)``."""
    return tf.sign(z) * tf.maximum(tf.abs(z) - theta, 0.0)


def _objective(Ax_fn, x, y, lam):
    return 0.5 * tf.reduce_sum(tf.square(Ax_fn(x) - y), -1) + lam * tf.reduce_sum(
        tf.abs(x), -1)


def _step_tensor(A, step, dtype, batch):
    if step is None:
        return 1.0 / lipschitz_constant(A)
    step = tf.convert_to_tensor(step, dtype)
    if step.shape.rank == 1:
        require(step.shape[0] == batch, f"step must be a scalar or have shape ({batch},), "
                f"got {step.shape}")
        step = step[:, None]
    return step


@tf.function(jit_compile=True)
def _run(A, y, lam, x0, step, num_iterations, accelerated):
    Ax, ATr = _ops(A)
    ta = tf.TensorArray(y.dtype, size=num_iterations + 1)
    ta = ta.write(0, _objective(Ax, x0, y, lam))

    def body(k, x, x_prev, t, ta):
        if accelerated:
            t_next = 0.5 * (1.0 + tf.sqrt(1.0 + 4.0 * t * t))
            z = x + ((t - 1.0) / t_next) * (x - x_prev)
        else:
            t_next, z = t, x
        x_new = soft_threshold(z - step * ATr(Ax(z) - y), lam * step)
        ta = ta.write(k + 1, _objective(Ax, x_new, y, lam))
        return k + 1, x_new, x, t_next, ta

    one = tf.ones([], y.dtype)
    _, x, _, _, ta = tf.while_loop(lambda k, *_: k < num_iterations, body,
                                   (tf.constant(0), x0, x0, one, ta))
    return x, ta.stack()


def _solve(A, y, lam, num_iterations, x0, step, accelerated, dtype):
    if isinstance(num_iterations, bool) or not isinstance(num_iterations, int) \
            or num_iterations < 0:
        raise UserError(f"num_iterations must be an integer >= 0, got {num_iterations!r}")
    A, y, lam, x0 = _prepare(A, y, lam, x0, dtype)
    step = _step_tensor(A, step, dtype, y.shape[0])
    return _run(A, y, lam, x0, step, num_iterations, accelerated)


def ista(A, y, lam, num_iterations, x0=None, step=None, dtype=tf.float32):
    """ISTA on a batch of Lasso problems.

    Args:
      A: ``(m, n)`` shared or ``(B, m, n)`` per-instance dictionary.
      y: ``(B, m)`` measurements.
      lam: the l1 weight (the paper uses 0.005).
      num_iterations: K >= 0.
      x0: ``(B, n)`` start (zeros by default).
      step: step size (scalar or ``(B,)``); ``1/L`` with ``L = ||A||_2^2`` by default.
      dtype: computation dtype.

    Returns:
      ``(x_K, curve)``: the last iterate ``(B, n)`` and the per-sample Lasso objective at
      ``x_0 .. x_K``, shape ``(K + 1, B)``.
    """
    return _solve(A, y, lam, num_iterations, x0, step, False, dtype)


def fista(A, y, lam, num_iterations, x0=None, step=None, dtype=tf.float32):
    """FISTA on a batch of Lasso problems; same arguments and returns as :func:`ista`."""
    return _solve(A, y, lam, num_iterations, x0, step, True, dtype)


def fista_from(A, y, lam, x0, num_iterations, step=None, dtype=tf.float32):
    """FISTA continued from a given point ``x0`` (e.g. the output of an unrolled LISTA).

    Plain FISTA restarts its momentum at ``x0`` (``t = 1``, ``x_{-1} = x_0``).  ``run.lasso``
    continues the LISTA/ALISTA curves of Fig. 6 after their 16 layers this way.  The
    original releases no continuation code (its test mode only saves layer 16's output);
    FISTA with the ``1/||A||_F^2`` step is inferred from the figure: of FISTA and ISTA with
    the ``1/||A||_F^2`` and ``1/L`` steps, only it matches the dotted curves' level and
    wiggles (docs/reproduction.md, Figure 6).  The returned curve starts with ``f(x0)``.
    """
    require(x0 is not None, "x0 must be given to fista_from")
    return _solve(A, y, lam, num_iterations, x0, step, True, dtype)


def lasso_fstar(A, y, lam, num_iterations=2000):
    """``f*`` per sample, shape ``(B,)``: the Lasso objective after ``num_iterations``
    FISTA iterations from zero, in float64 (the paper uses 2,000)."""
    require_positive_int(num_iterations, "num_iterations")
    _, curve = fista(A, y, lam, num_iterations, dtype=tf.float64)
    # FISTA is not monotone: keep the best objective seen.
    return tf.reduce_min(curve, axis=0)

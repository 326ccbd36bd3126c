r"""Torch's L-BFGS: up to ``max_iter`` quasi-Newton iterations per step, one compiled loop.

One step of ``torch.optim.LBFGS`` is a whole small optimisation: from the loss and gradient at
the current point it runs inner iterations, each

.. math::
    y = g_k - g_{k-1},\ s = t_{k-1} d_{k-1},\ \text{if } y^\top s > 10^{-10}:\
    \text{remember } (y, s, \rho = 1 / y^\top s),\ \gamma = \frac{y^\top s}{y^\top y}
    \\
    d_k = -H_k g_k \quad\text{(the two-loop recursion over the last ``history_size`` pairs,}
    \ H^0 = \gamma I)
    \\
    x \leftarrow x + t_k d_k, \quad t_k = \text{lr} \ \text{(}
    \min(1, 1/\lVert g\rVert_1)\,\text{lr on the very first iteration), or the strong-Wolfe step}

(the first iteration ever is steepest descent, :math:`d = -g`), stopping on torch's tests: the
gradient's max norm under ``tolerance_grad``, the directional derivative above
``-tolerance_change``, a step or a loss change under ``tolerance_change``, ``max_iter``
iterations or ``max_eval`` evaluations of the loss.  Here the iterations and the line search
are ``lax.while_loop``\ s: one step is one program, with no return to the host per iteration.

The "flat vector" torch builds by concatenating the parameters stays a tree here (see
:mod:`._tree_vectors`), so each parameter keeps its sharding.  The history is a ring buffer
of ``history_size`` entries per parameter, allocated at ``init`` (torch grows its lists up to
that size: its memory at a full history, ours from the start).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validation import check, check_lr
from . import _tree_vectors as tv
from ._common import Hyperparam, step_to, value_at, zero_count
from ._line_search import strong_wolfe
from ._spec import TorchSpec, words

MEMORY_THRESHOLD = 1e-10  # torch keeps a (y, s) pair only when y.s exceeds this


class LBFGSState(NamedTuple):
    """torch's state entries (kept on the first parameter there), the history as a ring.

    ``count``: steps taken; ``func_evals`` / ``n_iter``: loss evaluations and inner iterations
    over all steps; ``d``, ``t``: the last direction and step; ``old_dirs`` / ``old_stps``
    (``y`` / ``s``) and ``ro``: the remembered pairs, entry ``i`` (0 = oldest) at ring slot
    ``(oldest + i) % history_size``; ``memory``: how many are kept; ``al``: the two-loop's
    coefficients of the last iteration, by age; ``H_diag``, ``prev_flat_grad``, ``prev_loss``:
    as torch."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    func_evals: jax.Array
    n_iter: jax.Array
    d: Any
    t: jax.Array
    old_dirs: Any
    old_stps: Any
    ro: jax.Array
    memory: jax.Array
    oldest: jax.Array
    al: jax.Array
    H_diag: jax.Array
    prev_flat_grad: Any
    prev_loss: jax.Array


def _dtype_of(params: Any) -> Any:
    dtypes = {jnp.result_type(x) for x in jax.tree.leaves(params)}
    if len(dtypes) != 1:
        names = ", ".join(sorted(str(d) for d in dtypes))
        raise TypeError(f"LBFGS needs every parameter in one dtype (got {names})")
    return dtypes.pop()


def init_state(params: Any, history_size: int) -> LBFGSState:
    dtype = _dtype_of(params)
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
    history = lambda: jax.tree.map(lambda p: jnp.zeros((history_size, *p.shape), p.dtype), params)  # noqa: E731
    scalar = lambda: jnp.zeros((), dtype)  # noqa: E731  (one array per field: donated)
    return LBFGSState(
        count=zero_count(), func_evals=zero_count(), n_iter=zero_count(), d=zeros(), t=scalar(),
        old_dirs=history(), old_stps=history(), ro=jnp.zeros((history_size,), dtype),
        memory=zero_count(), oldest=zero_count(), al=jnp.zeros((history_size,), dtype),
        H_diag=jnp.ones((), dtype), prev_flat_grad=zeros(), prev_loss=scalar(),
    )  # fmt: skip


def _direction(s: LBFGSState, g: Any, history_size: int) -> LBFGSState:
    """Remember the last pair when its curvature is positive, then :math:`d = -H g` by the
    two-loop recursion (newest pair to oldest, then back)."""
    y = tv.sub(g, s.prev_flat_grad)
    step = tv.scale(s.t, s.d)
    ys = tv.dot(y, step)

    def remember(s: LBFGSState) -> LBFGSState:
        full = s.memory == history_size
        slot = jnp.where(full, s.oldest, (s.oldest + s.memory) % history_size)
        return s._replace(
            old_dirs=tv.set_row(s.old_dirs, slot, y), old_stps=tv.set_row(s.old_stps, slot, step),
            ro=s.ro.at[slot].set(1.0 / ys), memory=jnp.where(full, s.memory, s.memory + 1),
            oldest=jnp.where(full, (s.oldest + 1) % history_size, s.oldest),
            H_diag=ys / tv.dot(y, y),
        )  # fmt: skip

    s = jax.lax.cond(ys > MEMORY_THRESHOLD, remember, lambda s: s, s)
    at = lambda i: (s.oldest + i) % history_size  # noqa: E731

    def backward(j, carry):
        q, al = carry
        i = s.memory - 1 - j
        a = tv.dot(tv.row(s.old_stps, at(i)), q) * s.ro[at(i)]
        return tv.axpy(-a, tv.row(s.old_dirs, at(i)), q), al.at[i].set(a)

    q, al = jax.lax.fori_loop(0, s.memory, backward, (tv.neg(g), s.al))
    r = tv.scale(s.H_diag, q)

    def forward(i, r):
        be = tv.dot(tv.row(s.old_dirs, at(i)), r) * s.ro[at(i)]
        return tv.axpy(al[i] - be, tv.row(s.old_stps, at(i)), r)

    return s._replace(d=jax.lax.fori_loop(0, s.memory, forward, r), al=al)


def run_step(
    value_and_grad: Callable[[Any], tuple[jax.Array, Any]],
    params: Any,
    state: LBFGSState,
    loss: jax.Array,
    grad: Any,
    *,
    lr: Any,
    tolerance_grad: Any,
    tolerance_change: Any,
    max_iter: int,
    max_eval: int,
    history_size: int,
    line_search_fn: str | None,
) -> tuple[Any, LBFGSState]:
    """One ``torch.optim.LBFGS.step``: the new parameters and state, from the loss and gradient
    at ``params`` (torch's first closure call) and ``value_and_grad`` for the others."""
    dtype = _dtype_of(params)
    as_dtype = lambda v: jnp.asarray(v).astype(dtype)  # noqa: E731
    lr, tol_grad, tol_change = as_dtype(lr), as_dtype(tolerance_grad), as_dtype(tolerance_change)
    loss = as_dtype(loss)
    state = state._replace(func_evals=state.func_evals + 1)

    def evaluate(x: Any) -> tuple[jax.Array, Any]:
        value, g = value_and_grad(x)
        return as_dtype(value), g

    def iteration(c: dict) -> dict:
        s: LBFGSState = c["state"]
        k, g, x = c["k"] + 1, c["g"], c["x"]
        s = s._replace(n_iter=s.n_iter + 1)
        first = s.n_iter == 1
        s = jax.lax.cond(
            first,
            lambda s: s._replace(d=tv.neg(g), memory=jnp.zeros_like(s.memory),
                                 oldest=jnp.zeros_like(s.oldest), H_diag=jnp.ones((), dtype)),
            lambda s: _direction(s, g, history_size),
            s,
        )  # fmt: skip
        s = s._replace(prev_flat_grad=g, prev_loss=c["loss"])

        def first_step(_):  # torch: min(1, 1 / |g|_1) * lr, only on the very first iteration
            shrink = 1.0 / tv.abs_sum(g)
            return jnp.where(shrink < 1.0, shrink, 1.0) * lr

        t = jax.lax.cond(first, first_step, lambda _: lr, None)  # no |g|_1 pass otherwise
        s = s._replace(t=t)
        gtd = tv.dot(g, s.d)
        descends = ~(gtd > -tol_change)

        def move(c: dict) -> dict:
            if line_search_fn == "strong_wolfe":
                budget = max_eval - c["evals"]
                loss, g_new, t_new, evals = strong_wolfe(
                    lambda t: evaluate(tv.axpy(t, s.d, x)), s.d, t, c["loss"], g, gtd, budget,
                    tol_change,
                )  # fmt: skip
                x_new = tv.axpy(t_new, s.d, x)
                opt_cond = tv.abs_max(g_new) <= tol_grad
            else:
                t_new, x_new = t, tv.axpy(t, s.d, x)

                def again(_):
                    value, g_new = evaluate(x_new)
                    return value, g_new, tv.abs_max(g_new) <= tol_grad, jnp.ones((), jnp.int32)

                def last(_):  # torch does not evaluate after the last iteration
                    return c["loss"], g, c["opt_cond"], jnp.zeros((), jnp.int32)

                loss, g_new, opt_cond, evals = jax.lax.cond(k != max_iter, again, last, None)
            new_s = s._replace(t=t_new, func_evals=s.func_evals + evals)
            current = c["evals"] + evals
            stop = (
                (k == max_iter) | (current >= max_eval) | opt_cond
                | (tv.abs_max(tv.scale(t_new, s.d)) <= tol_change)
                | (jnp.abs(loss - s.prev_loss) < tol_change)
            )  # fmt: skip
            return dict(c, x=x_new, loss=loss, g=g_new, opt_cond=opt_cond, evals=current,
                        state=new_s, stop=stop)  # fmt: skip

        c = dict(c, k=k, state=s)
        return jax.lax.cond(descends, move, lambda c: dict(c, stop=jnp.ones((), bool)), c)

    opt_cond = tv.abs_max(grad) <= tol_grad
    start = dict(
        k=jnp.zeros((), jnp.int32), x=params, loss=loss, g=grad, opt_cond=opt_cond,
        evals=jnp.ones((), jnp.int32), state=state, stop=opt_cond,
    )  # fmt: skip
    c = jax.lax.while_loop(lambda c: ~c["stop"] & (c["k"] < max_iter), iteration, start)
    return c["x"], c["state"]._replace(count=state.count + 1)


def lbfgs(
    lr: Hyperparam = 1,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: Hyperparam = 1e-7,
    tolerance_change: Hyperparam = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""L-BFGS exactly as ``torch.optim.LBFGS`` (see the module docstring for the iteration).

    ``update(grads, state, params, *, value_fn, value=None)``: ``grads`` and ``value`` are the
    gradient and loss at ``params`` (``jax.value_and_grad(value_fn)(params)``; the loss is
    computed when ``value`` is omitted) and ``value_fn(params) -> loss`` is torch's closure,
    evaluated (with its gradient) as often as the iterations and the line search need.  The
    update takes ``params`` to the point torch's step ends at.  ``lr`` (a float, scalar array
    or a schedule over steps) and the tolerances are traced; ``max_iter``, ``max_eval`` (default
    ``max_iter * 5 // 4``), ``history_size`` and ``line_search_fn`` (``None`` or
    ``"strong_wolfe"``) shape the program.

    Differences from optax: ``optax.lbfgs`` is one quasi-Newton iteration per update with a
    zoom line search; torch runs up to ``max_iter`` iterations per step, with its own
    initial step, stopping tests and (optional) strong-Wolfe search, reproduced here.  Every
    parameter must share one dtype (torch concatenates them into one vector).
    """
    check_lr(lr)
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    for name, value in (
        ("max_iter", max_iter),
        ("max_eval", max_eval),
        ("history_size", history_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    check(history_size, lambda v: v >= 1, "Invalid history_size value: {}")
    if line_search_fn not in (None, "strong_wolfe"):
        raise RuntimeError(
            f"only 'strong_wolfe' is supported, got line_search_fn={line_search_fn!r}"
        )
    if line_search_fn is not None and max_eval < 1:
        # torch fails inside its line search (an unbound local) on the first step
        raise ValueError(f"Invalid max_eval value with a line search: {max_eval} (must be >= 1)")

    def init_fn(params: Any) -> LBFGSState:
        return init_state(params, history_size)

    def update_fn(grads, state, params=None, *, value_fn=None, value=None, **extra_args):
        del extra_args
        if params is None or value_fn is None:
            raise ValueError(
                "jaxsched.lbfgs needs the parameters and the loss: call "
                "tx.update(grads, state, params, value_fn=loss_of_params, value=loss)"
            )
        if value is None:
            value = value_fn(params)
        new_params, new_state = run_step(
            jax.value_and_grad(value_fn), params, state, value, grads,
            lr=value_at(lr, state.count), tolerance_grad=value_at(tolerance_grad, state.count),
            tolerance_change=value_at(tolerance_change, state.count), max_iter=max_iter,
            max_eval=max_eval, history_size=history_size, line_search_fn=line_search_fn,
        )  # fmt: skip
        return jax.tree.map(step_to, new_params, params), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


LBFGS = TorchSpec(
    name="LBFGS",
    factory=lbfgs,
    keys=words("lr max_iter max_eval tolerance_grad tolerance_change history_size line_search_fn"),
    static_args=frozenset({"max_iter", "max_eval", "history_size"}),
    step_entry=False,
)

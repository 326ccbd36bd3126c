"""The jitted programs of a stateful optimizer: ``opt.step(grads)`` and the fused train steps.

An optimizer build has one or two *update rules*, plain functions
``update(leaves, inner, grad_leaves, vector) -> (leaves, inner, vector)`` over the parameter
leaves, the groups' states (each in its engine's layout) and the hyperparameter vector, made by
:func:`engine_update`: the general rule and, when some XLA-engine group's weight decay is
exactly 0, one that skips the term.  An *entry point* wraps a rule
into the function that is jitted (the state donated, and the params where the rule updates
them in place):

- :func:`checked_step` for ``opt.step(grads)``: the gradients come in as leaves;
- :func:`train_step` for ``opt.make_train_step(loss_fn)``: the gradients are computed from the
  loss inside the same program, so they never leave it (one dispatch per step, not two).

:class:`Programs` holds one entry point's jitted rules and picks the one to run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

Update = Callable[..., tuple[Any, Any, Any]]


def engine_update(
    engines: Sequence[Any],
    group_indices: Sequence[Sequence[int]],
    unpack: Callable[[Any], tuple[dict, dict]],
    in_place: bool,
    zero_decay: frozenset[int],
) -> Update:
    """The update rule over all groups, each by its engine (``_engines``); ``zero_decay``: the
    groups whose weight-decay term is left out (their decay is exactly 0)."""

    def update(leaves, inner, grad_leaves, vector, mask=None):
        # mask: in the per-parameter mode, a bool vector (a leaf with a gradient or not)
        hyper, derived = unpack(vector)
        out, new_inner = list(leaves), {}
        for g, (engine, idx) in enumerate(zip(engines, group_indices, strict=True)):
            new_params, new_inner[g] = engine.update(
                [leaves[i] for i in idx], [grad_leaves[i] for i in idx], inner[g], hyper[g],
                derived[g], in_place=in_place, zero_decay=g in zero_decay,
                mask=None if mask is None else [mask[i] for i in idx],
            )  # fmt: skip
            for i, p in zip(idx, new_params, strict=True):
                out[i] = p
        # The vector comes back as a device array, reused until the next write.
        return out, new_inner, vector

    return update


class Programs:
    """One entry point's programs: the general rule jitted and, when there is one, the
    zero-decay rule.  Both are compiled at the first call (the general one ahead of time), so a
    later write that makes a decay non-zero switches programs without compiling."""

    def __init__(
        self,
        entry: Callable[[Update], Callable],
        general: Update,
        zero_decay: Update | None,
        donate: tuple[int, ...] = (0, 1),
    ):
        self.general = jax.jit(entry(general), donate_argnums=donate)
        self.zero_decay = (
            None if zero_decay is None else jax.jit(entry(zero_decay), donate_argnums=donate)
        )
        self.compiled: Any = None
        self.choice: Callable | None = None

    def run(self, args: tuple, zero_decay_applies: Callable[[], bool]) -> Any:
        """Run the program that applies now; ``zero_decay_applies`` is asked once per
        :meth:`forget`."""
        if self.zero_decay is not None and self.compiled is None:
            self.compiled = self.general.lower(*args).compile()
        if self.choice is None:  # re-decided only after a hyperparameter write
            if self.zero_decay is None:
                self.choice = self.general
            else:
                self.choice = self.zero_decay if zero_decay_applies() else self.compiled
        try:
            return self.choice(*args)
        except TypeError:
            if self.choice is not self.compiled:
                raise
            # Arguments of another signature than the one compiled ahead of time (bad
            # gradients, a smaller last batch): jit traces them, and checks or compiles.
            return self.general(*args)

    def lower(self, args: tuple, zero_decay_applies: Callable[[], bool]) -> Any:
        """The ``jax.stages.Lowered`` program that :meth:`run` would run on ``args``."""
        program = (
            self.zero_decay
            if self.zero_decay is not None and zero_decay_applies()
            else self.general
        )
        return program.lower(*args)

    def forget(self) -> None:
        """A hyperparameter was written: decide again at the next run."""
        self.choice = None


def checked_step(
    update: Update,
    signature: Sequence[tuple[tuple[int, ...], Any]],
    mismatch: Callable[[list], Exception],
) -> Callable:
    """``opt.step``'s program.  The gradients' shapes and dtypes are checked when it is traced,
    i.e. only for a signature jit has not seen: a mismatch raises before anything runs (nothing
    is donated), and a step costs no per-leaf check in Python."""
    signature = list(signature)

    def step(leaves, inner, grad_leaves, vector, *mask):
        # getattr: a gradient "leaf" may be a container or None here (it came from a fast
        # read of nested dicts that checks keys, not leaves)
        if [(getattr(g, "shape", None), getattr(g, "dtype", None)) for g in grad_leaves] != (
            signature
        ):
            raise mismatch(grad_leaves)
        return update(leaves, inner, grad_leaves, vector, *mask)

    return step


def train_step(
    update: Update,
    loss_fn: Callable,
    has_aux: bool,
    treedef: Any,
    *,
    accumulation_steps: int = 1,
    prepare: Callable[[Any], Any] | None = None,
) -> Callable:
    """A train step's program: ``loss_fn(params, *args, **kwargs)`` and its gradient with
    respect to ``params`` (``jax.value_and_grad``), then ``update``, in one program.

    ``accumulation_steps`` k > 1: the arguments hold k micro-batches along their first axis;
    as torch's accumulation loop (``(loss / k).backward()`` per micro-batch) the gradients of
    ``loss_i / k`` are summed in order in a ``lax.scan``, and the loss returned is the sum of
    the ``loss_i / k`` (``aux`` stacked).  ``prepare(grads)`` (clipping) runs on the summed
    gradients before the update."""
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=has_aux)
    k = accumulation_steps

    def micro(params, args, kwargs):
        if not has_aux:
            return jax.value_and_grad(lambda p: loss_fn(p, *args, **kwargs) / k)(params)
        (loss, aux), grads = jax.value_and_grad(
            lambda p: (lambda out: (out[0] / k, out[1]))(loss_fn(p, *args, **kwargs)),
            has_aux=True,
        )(params)
        return (loss, aux), grads

    def step(leaves, inner, vector, args, kwargs):
        params = treedef.unflatten(leaves)
        if k == 1:
            out, grads = value_and_grad(params, *args, **kwargs)
        else:
            first = jax.tree.map(lambda x: x[0], (args, kwargs))
            rest = jax.tree.map(lambda x: x[1:], (args, kwargs))
            out0, grads0 = micro(params, *first)

            def body(carry, batch):
                total, summed = carry
                out, grads = micro(params, *batch)
                loss = out[0] if has_aux else out
                summed = jax.tree.map(lambda a, g: a + g, summed, grads)
                return (total + loss, summed), (out[1] if has_aux else None)

            loss0 = out0[0] if has_aux else out0
            (loss, grads), auxes = jax.lax.scan(body, (loss0, grads0), rest)
            if has_aux:
                aux = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), out0[1], auxes)
                out = (loss, aux)
            else:
                out = loss
        if prepare is not None:
            grads = prepare(grads)
        new_leaves, inner, vector = update(leaves, inner, treedef.flatten_up_to(grads), vector)
        return new_leaves, inner, vector, out

    return step


def cached(cache: dict[Any, dict], configuration: Any, size: int = 8) -> dict:
    """The programs of ``configuration`` (a fresh dict the first time); the ``size`` most
    recently used configurations are kept."""
    programs = cache.pop(configuration, None)
    if programs is None:
        programs = {}
    cache[configuration] = programs
    while len(cache) > size:
        del cache[next(iter(cache))]
    return programs


# -- what a program may donate ------------------------------------------------------------------


class References:
    """Which of the optimizer's parameter arrays are held outside it.

    A step donates the parameter buffers to XLA (updated in place) only when nobody else holds
    them: an array a user kept (``p = opt.params["w"]``, a model that holds the leaves) keeps
    its values, and that step writes new buffers instead.  The test compares the arrays'
    reference counts with those of placeholders held the way the optimizer holds its leaves
    (a leaf list and the parameter tree), so it is exact whoever held the arrays at build.
    """

    def __init__(self, treedef: Any) -> None:
        placeholders = [object() for _ in range(treedef.num_leaves)]
        try:
            tree = treedef.unflatten(placeholders)
        except Exception:  # a node type that checks its leaves: never donate
            self._baseline = None
        else:
            self._baseline = self._counts(placeholders)
            del tree

    @staticmethod
    def _counts(leaves: Sequence[Any]) -> list[int]:
        count = sys.getrefcount
        return [count(x) for x in leaves]

    def shared(self, leaves: Sequence[Any]) -> bool:
        return self._baseline is None or self._counts(leaves) != self._baseline


def calls_back(fn: Callable, *args: Any, **kwargs: Any) -> bool:
    """Whether ``fn`` traced on ``args`` calls back into Python (``jax.debug.callback``,
    ``pure_callback``, ``io_callback``): such a program may raise while it runs, so it must not
    consume (donate) the optimizer's buffers."""

    def inner(value: Any) -> list[Any]:
        """The jaxprs inside a primitive's parameter (scan bodies, cond branches, ...)."""
        if hasattr(value, "eqns"):
            return [value]
        if hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
            return [value.jaxpr]
        if isinstance(value, (tuple, list)):
            return [j for v in value for j in inner(v)]
        return []

    def visit(jaxpr: Any) -> bool:
        for eqn in jaxpr.eqns:
            if "callback" in eqn.primitive.name:
                return True
            if any(visit(sub) for value in eqn.params.values() for sub in inner(value)):
                return True
        return False

    return visit(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)


def check_not_traced(outputs: Sequence[Any], what: str) -> None:
    """Raise when a program's outputs are tracers: the stateful call ran under ``jax.jit`` /
    ``vmap`` / ``grad``, where it cannot update anything (nothing was executed or donated)."""
    if any(issubclass(kind, jax.core.Tracer) for kind in set(map(type, outputs))):
        raise RuntimeError(
            f"{what} was called inside a JAX transformation (jax.jit, vmap, grad, ...): the "
            "stateful optimizer updates its own arrays and must be called from Python.  To "
            "trace a whole train step, use opt.make_train_step(loss_fn), or the functional "
            "transform opt.tx with opt.opt_state.  Nothing was changed."
        )

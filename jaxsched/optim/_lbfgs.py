"""``torch.optim.LBFGS``: one group, ``step(loss_fn, *args)``, torch's global state layout.

The maths is :func:`jaxsched.lbfgs` (``transforms/_lbfgs.py``); this class is the torch surface
over it.  Its state lives in the transform's layout (a ring of ``history_size`` pairs per
parameter); :meth:`LBFGS.state_dict` writes torch's layout (one entry, on parameter 0, whose
vectors are the parameters flattened and concatenated in parameter order, and whose history
lists run oldest first) and :meth:`LBFGS.load_state_dict` reads it back, from torch too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from ..transforms._lbfgs import LBFGSState, init_state, run_step
from ..transforms._registry import SPECS
from . import _programs, _state_dict
from ._optimizer import Optimizer

_SINGLE_GROUP = "LBFGS doesn't support per-parameter options (parameter groups)"
# what shapes the compiled step: the spec's structural numbers and the line search
_STATIC = (*sorted(SPECS["LBFGS"].static_args), "line_search_fn")
# Compiled steps, shared by every LBFGS whose configuration (tree, shapes, shardings, vector
# layout, static values) and loss function are the same: a new optimizer for the same model
# and loss compiles nothing.  Bounded: it keeps the loss functions alive.
_PROGRAMS: dict[Any, Callable] = {}
_KEEP = 16


class LBFGS(Optimizer):
    """``torch.optim.LBFGS`` with torch's signature; the update is :func:`jaxsched.lbfgs`.

    ``step(loss_fn, *args, **kwargs)`` is torch's ``step(closure)``: ``loss_fn(params, *args,
    **kwargs)`` returns the scalar loss, and the step evaluates it (with its gradient) as
    often as torch would call the closure, all inside one compiled program (the inner
    iterations and the line search are ``lax.while_loop``\\ s).  It stores the new parameters
    and returns the loss at the parameters the step started from, as torch does.  ``args``
    are traced (new values never recompile); ``loss_fn`` is part of the compiled program's key,
    so pass the same function every step (a new lambda each step compiles each step).
    ``lr`` and the tolerances may be written in ``param_groups`` without recompiling.
    """

    spec = SPECS["LBFGS"]

    def __init__(
        self,
        params: Any,
        lr: float = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        groups = isinstance(params, (list, tuple)) and all(isinstance(g, Mapping) for g in params)
        if groups and len(params) > 1:
            raise ValueError(_SINGLE_GROUP)
        super().__init__(params, self._arguments(locals()))

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Refused: torch's LBFGS has exactly one group (its ``step`` then fails)."""
        raise ValueError(_SINGLE_GROUP)

    def make_train_step(self, loss_fn: Callable[..., Any], **options: Any) -> Callable:
        """Refused: ``step(loss_fn, *args)`` already runs the whole step in one program."""
        raise TypeError("LBFGS evaluates the loss itself: call opt.step(loss_fn, *args)")

    def _program(self, loss_fn: Callable[..., Any]) -> Callable:
        values = self.param_groups[0]._values
        statics = {k: values[k] for k in _STATIC}
        key = (loss_fn, self._configuration(), tuple(statics.items()))
        program = _PROGRAMS.get(key)
        if program is not None:
            return program
        treedef, unpack = self._treedef, self._vector.unpack
        if len(_PROGRAMS) >= _KEEP:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))

        def run(leaves, state, vector, args, kwargs):
            hyper = unpack(vector)[0][0]

            def value_and_grad(x):
                return jax.value_and_grad(lambda x: loss_fn(treedef.unflatten(x), *args, **kwargs))(
                    x
                )

            loss, grad = value_and_grad(leaves)
            new_leaves, new_state = run_step(
                value_and_grad, leaves, state, loss, grad, lr=hyper["lr"],
                tolerance_grad=hyper["tolerance_grad"],
                tolerance_change=hyper["tolerance_change"], **statics,
            )  # fmt: skip
            return new_leaves, new_state, loss, vector

        program = _PROGRAMS[key] = jax.jit(run, donate_argnums=(1,))
        return program

    def step(self, loss_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """One torch LBFGS step (up to ``max_iter`` iterations); returns the starting loss."""
        if not callable(loss_fn):
            raise TypeError(
                "LBFGS.step needs the loss as a function of the params: "
                "opt.step(loss_fn, *args, **kwargs)"
            )
        self._sync()
        _programs.check_not_traced(jax.tree.leaves((args, kwargs)), "optimizer.step")
        program = self._program(loss_fn)
        leaves, state, loss, vector = program(
            self._leaves, self._inner[0], self._vector.current(), args, kwargs
        )
        self._adopt("optimizer.step", leaves, {0: state}, vector)
        self.steps_taken += 1
        return loss

    # -- torch's layout ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: the whole state on parameter 0 (flat vectors over all parameters)."""
        values = self.param_groups[0]._values
        n = len(self._leaves)
        groups = [
            {**{k: _state_dict._plain(v) for k, v in values.items()}, "params": list(range(n))}
        ]
        s: LBFGSState = jax.device_get(self._tree_inner()[0])
        if int(s.func_evals) == 0:
            return {"state": {}, "param_groups": groups}
        entry: dict[str, Any] = {"func_evals": int(s.func_evals), "n_iter": int(s.n_iter)}
        if int(s.n_iter) >= 1:
            size, memory, oldest = values["history_size"], int(s.memory), int(s.oldest)
            slots = [(oldest + i) % size for i in range(memory)]
            flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])  # noqa: E731
            rows = lambda stack: [flat([x[j] for x in jax.tree.leaves(stack)]) for j in slots]  # noqa: E731
            entry.update(
                d=flat(s.d), t=float(s.t), old_dirs=rows(s.old_dirs), old_stps=rows(s.old_stps),
                ro=[np.asarray(s.ro[j]) for j in slots], H_diag=np.asarray(s.H_diag),
                prev_flat_grad=flat(s.prev_flat_grad), prev_loss=float(s.prev_loss),
            )  # fmt: skip
            if int(s.n_iter) >= 2:  # torch creates "al" at the first two-loop recursion
                entry["al"] = [np.asarray(s.al[i]) if i < memory else None for i in range(size)]
        return {"state": {0: entry}, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load :meth:`state_dict`'s output or torch's LBFGS state dict (tensors).  Checked
        whole first; on error nothing changes."""
        groups = list(state_dict["param_groups"])
        if len(groups) != 1:
            raise ValueError("loaded state dict has a different number of parameter groups")
        if len(groups[0]["params"]) != len(self._leaves):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size of "
                "optimizer's group"
            )
        values = {k: _state_dict._plain(v) for k, v in groups[0].items() if k != "params"}
        missing = [k for k in self.spec.keys if k not in values]
        if missing:
            raise ValueError(
                f"loaded state dict's param_groups[0] lacks {missing}: not from an LBFGS"
            )
        self.spec.factory(**{k: values[k] for k in self.spec.keys})  # torch's errors
        saved = state_dict["state"]
        pid = groups[0]["params"][0]
        entry = saved.get(pid, saved.get(str(pid), {})) if saved else {}
        state = self._read_state(entry, values["history_size"])
        with self._all_or_nothing():
            self.param_groups[0]._values = values
            self._build(None)
            self._inner = {0: self._engines[0].from_tree(state)}
        self._dirty.clear()

    def _read_state(self, entry: Mapping[str, Any], history_size: int) -> LBFGSState:
        """torch's entry (ours or torch's) as a host state in the transform's layout: the
        history oldest first from ring slot 0."""
        fresh = init_state(list(self._leaves), history_size)
        state: LBFGSState = jax.tree.map(np.array, jax.device_get(fresh))
        if not entry:
            return state
        shapes = [x.shape for x in self._leaves]
        dtype = state.t.dtype
        total = sum(int(np.prod(shape)) for shape in shapes)

        def vector(name: str, value: Any) -> list[np.ndarray]:
            flat = _state_dict._numpy(value).reshape(-1)
            if flat.size != total:
                raise ValueError(
                    f"loaded LBFGS state {name!r} has {flat.size} elements, the parameters {total}"
                )
            ends = np.cumsum([int(np.prod(shape)) for shape in shapes])[:-1]
            return [
                piece.reshape(shape).astype(dtype)
                for piece, shape in zip(np.split(flat, ends), shapes, strict=True)
            ]

        def scalar(value: Any) -> Any:
            return np.asarray(float(_state_dict._numpy(value)), dtype)

        def count(value: Any) -> Any:
            return np.asarray(int(value), np.int32)

        state = state._replace(func_evals=count(entry["func_evals"]), n_iter=count(entry["n_iter"]))
        if "d" not in entry:
            return state
        dirs, stps, ro = list(entry["old_dirs"]), list(entry["old_stps"]), list(entry["ro"])
        if not len(dirs) == len(stps) == len(ro) or len(dirs) > history_size:
            raise ValueError(
                f"loaded LBFGS history holds {len(dirs)} directions, {len(stps)} steps and "
                f"{len(ro)} curvatures; history_size is {history_size}"
            )
        for j, (y, s, r) in enumerate(zip(dirs, stps, ro, strict=True)):
            pairs = zip(vector("old_dirs", y), vector("old_stps", s), strict=True)
            for i, (y_i, s_i) in enumerate(pairs):
                state.old_dirs[i][j], state.old_stps[i][j] = y_i, s_i
            state.ro[j] = scalar(r)
        for i, a in enumerate((entry.get("al") or [])[:history_size]):
            if a is not None:
                state.al[i] = scalar(a)
        return state._replace(
            d=vector("d", entry["d"]), t=scalar(entry["t"]), memory=count(len(dirs)),
            oldest=count(0), H_diag=scalar(entry["H_diag"]),
            prev_flat_grad=vector("prev_flat_grad", entry["prev_flat_grad"]),
            prev_loss=scalar(entry["prev_loss"]),
        )  # fmt: skip

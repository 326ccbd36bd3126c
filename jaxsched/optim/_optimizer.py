"""The torch-like stateful optimizer: a thin shell over :func:`jaxsched.grouped`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from .._grouped import GroupedState, grouped, set_hyperparams, split_hyperparams
from . import _trees
from ._param_group import ParamGroup


class Optimizer:
    """Base class of the torch-like optimizers (``jaxsched.optim.SGD``, ``Adam``, ...).

    ``params`` is a pytree of float arrays (one group) or torch's list of group dicts whose
    ``"params"`` are parts of one parameter tree.  The maths lives in the functional
    transforms: ``tx`` is ``jaxsched.grouped(<transform>, labels, groups)`` and ``opt_state`` its
    state, which holds every numeric hyperparameter, so writing ``group["lr"]`` never
    recompiles.  ``step(grads)`` runs one jitted, donated update and returns the new params.
    """

    _factory: ClassVar[Callable[..., optax.GradientTransformation]]
    _keys: ClassVar[tuple[str, ...]]  # torch's param_group keys after "params", in order
    _has_step: ClassVar[bool] = True  # torch keeps a per-parameter "step" entry
    _state_from_start: ClassVar[bool] = False  # torch fills the state at construction (Adagrad)
    # per-parameter state entries torch keeps only under a condition on the group's values
    _conditional: ClassVar[dict[str, Callable[[Mapping[str, Any]], bool]]] = {}

    def __init__(self, params: Any, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        accepted = set(inspect.signature(type(self)._factory).parameters)
        self._hyperparameter_names = tuple(k for k in self._keys if k in accepted)
        type(self)._factory(**self._factory_kwargs(self.defaults))  # torch's errors, now
        if isinstance(params, (list, tuple)) and len(params) == 0:
            raise ValueError("optimizer got an empty parameter list")
        specs = list(params) if _trees.is_group_list(params) else [{"params": params}]
        trees = [spec["params"] for spec in specs]
        union = _trees.merge(trees)
        _trees.check_float_leaves(union)
        if not jax.tree.leaves(union):
            raise ValueError("optimizer got an empty parameter list")
        # Copies: step() donates its buffers, which must not be the caller's arrays.
        self._params = jax.tree.map(lambda x: jnp.array(x, copy=True), union)
        self._group_trees = trees
        self.param_groups: list[ParamGroup] = []
        for spec in specs:
            self.param_groups.append(ParamGroup(self, len(self.param_groups), self._values(spec)))
        self._dirty: set[tuple[int, str]] = set()
        self._build(previous=None)

    # -- construction ---------------------------------------------------------------------------

    def _values(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """torch's add_param_group: the group's own keys, then the missing defaults."""
        values = {k: v for k, v in spec.items() if k != "params"}
        for key, default in self.defaults.items():
            values.setdefault(key, default)
        return values

    def _factory_kwargs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: values[k] for k in self._hyperparameter_names if k in values}

    def _transform(self, values: list[Mapping[str, Any]]) -> optax.GradientTransformation:
        labels = _trees.labels_for(self._params, self._group_indices)
        kwargs = {g: self._factory_kwargs(v) for g, v in enumerate(values)}
        return grouped(type(self)._factory, labels, kwargs)

    def _build(self, previous: GroupedState | None) -> None:
        """(Re)build the transform, its state and the jitted step; keep ``previous`` inner states
        (all groups' when the structure allows, else an error)."""
        self._group_indices = _trees.group_leaf_indices(self._params, self._group_trees)
        self.tx = self._transform([pg._values for pg in self.param_groups])
        state = self.tx.init(self._params)
        if previous is not None:
            inner = dict(state.inner)
            for g, old in previous.inner.items():
                if jax.tree.structure(old) != jax.tree.structure(inner[g]):
                    raise ValueError(
                        f"this change to param_groups[{g}] alters the optimizer state's layout "
                        f"(e.g. amsgrad or centered switched); build a new optimizer instead"
                    )
                inner[g] = old
            state = GroupedState(inner, state.hyperparams)
        self._opt_state = state
        tx = self.tx

        def raw_step(params, opt_state, grads):
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        self._step = jax.jit(raw_step, donate_argnums=(0, 1))

    # -- the torch surface ----------------------------------------------------------------------

    @property
    def params(self) -> Any:
        """The current parameter tree (the union of the groups' trees)."""
        return self._params

    @params.setter
    def params(self, new: Any) -> None:
        """Replace the parameter values (e.g. weights loaded from a checkpoint); structure,
        shapes and dtypes must match.  The optimizer state is kept."""
        problem = _trees.first_mismatch(self._params, new)
        if problem is not None:
            raise ValueError(f"new params do not match the optimizer's: {problem}")
        self._params = jax.tree.map(lambda x: jnp.array(x, copy=True), new)

    @property
    def opt_state(self) -> GroupedState:
        self._sync()
        return self._opt_state

    @opt_state.setter
    def opt_state(self, state: GroupedState) -> None:
        """Adopt a state produced outside (e.g. by your own jitted train step); the groups'
        numeric hyperparameters are read back from it (one device-to-host transfer)."""
        if jax.tree.structure(state) != jax.tree.structure(self._opt_state):
            raise ValueError("opt_state must have the structure of optimizer.opt_state")
        self._opt_state = state
        self._dirty.clear()
        for g, hyper in state.hyperparams.items():
            for name, value in hyper.items():
                old = self.param_groups[g]._values[name]
                if isinstance(value, tuple):
                    pairs = zip(value, old, strict=True)
                    value = tuple(o if v is None else float(v) for v, o in pairs)
                else:
                    value = float(value)
                self.param_groups[g]._values[name] = value

    def step(self, grads: Any, closure: Callable | None = None) -> Any:
        """Apply one update with ``grads`` (same structure, shapes and dtypes as ``params``);
        store and return the new parameters.  ``closure`` is not supported (torch's LBFGS
        convention) and must be ``None``."""
        if closure is not None:
            raise ValueError("closure is not supported: compute the gradients and pass them")
        if jax.tree.structure(grads) != jax.tree.structure(self._params) or any(
            getattr(g, "shape", None) != p.shape or getattr(g, "dtype", None) != p.dtype
            for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(self._params), strict=False)
        ):
            problem = _trees.first_mismatch(self._params, grads)
            raise ValueError(f"grads do not match the parameters: {problem}")
        self._sync()
        self._params, self._opt_state = self._step(self._params, self._opt_state, grads)
        return self._params

    def zero_grad(self, set_to_none: bool = True) -> None:
        """A no-op, kept so torch recipes port unchanged: JAX gradients are values returned by
        ``jax.grad``, never accumulated into the parameters, so there is nothing to clear."""
        del set_to_none

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add parameters (e.g. an unfrozen backbone) with their own hyperparameters.  The new
        leaves join ``params``; existing groups keep their state.  Recompiles ``step``."""
        if not isinstance(param_group, Mapping) or "params" not in param_group:
            raise TypeError("param_group must be a dict with a 'params' entry")
        _trees.check_float_leaves(param_group["params"])
        union = _trees.merge([self._params, param_group["params"]])
        values = self._values(param_group)
        type(self)._factory(**self._factory_kwargs(values))
        self._sync()
        previous = self._opt_state
        self._params = jax.tree.map(lambda x: jnp.array(x, copy=True), union)
        self._group_trees.append(param_group["params"])
        self.param_groups.append(ParamGroup(self, len(self.param_groups), values))
        self._build(previous)

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``{"state": {i: {...}}, "param_groups": [{..., "params": [i...]}]}``."""
        from ._state_dict import to_torch_layout

        return to_torch_layout(self)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state dict from :meth:`state_dict` or from torch itself (tensors)."""
        from ._state_dict import from_torch_layout

        from_torch_layout(self, state_dict)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for g, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {g}")
            lines.extend(f"    {k}: {v}" for k, v in group._values.items())
        return "\n".join([*lines, ")"])

    # -- internals ------------------------------------------------------------------------------

    def _group_leaves(self, g: int) -> list[jax.Array]:
        leaves = jax.tree.leaves(self._params)
        return [leaves[i] for i in self._group_indices[g]]

    def _keeps(self, field: str, values: Mapping[str, Any]) -> bool:
        condition = self._conditional.get(field)
        return condition is None or bool(condition(values))

    def _mark_dirty(self, g: int, key: str) -> None:
        if key in self._hyperparameter_names:
            self._dirty.add((g, key))

    def _sync(self) -> None:
        """Push hyperparameters written into ``param_groups`` to the optax state."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        rebuild = False
        by_group: dict[int, dict[str, Any]] = {}
        for g, key in dirty:
            value = self.param_groups[g]._values[key]
            held = self._opt_state.hyperparams[g]
            dynamic, _ = split_hyperparams({key: value})
            if key in held and key in dynamic and _same_shape(held[key], dynamic[key]):
                by_group.setdefault(g, {})[key] = value
            else:
                rebuild = True
        for g, values in by_group.items():
            self._opt_state = set_hyperparams(self._opt_state, g, **values)
        if rebuild:
            for pg in self.param_groups:
                type(self)._factory(**self._factory_kwargs(pg._values))
            self._build(self._opt_state)


def _same_shape(held: Any, new: Any) -> bool:
    if isinstance(held, tuple) or isinstance(new, tuple):
        return (
            isinstance(held, tuple)
            and isinstance(new, tuple)
            and len(held) == len(new)
            and all((h is None) == (n is None) for h, n in zip(held, new, strict=True))
        )
    return True

"""The ``param_groups`` view: a host-side mirror of one group's hyperparameters."""

from __future__ import annotations

import weakref
from collections.abc import Collection, Iterator, MutableMapping
from typing import Any, Protocol


class GroupOwner(Protocol):
    """What a group needs from the optimizer that holds it."""

    @property
    def _hyperparameter_names(self) -> Collection[str]: ...

    def _group_leaves(self, g: int) -> list[Any]: ...

    def _mark_dirty(self, g: int, key: str) -> None: ...


class ParamGroup(MutableMapping):
    """One entry of ``optimizer.param_groups``: torch's keys in torch's order, ``"params"``
    first (the group's current leaves).

    Values are plain Python objects kept on the host, so reading ``group["lr"]`` never waits
    for the device.  Writing a value marks it for the next ``step()``: a numeric value is copied
    into the optax state (no recompilation); a structural one (``nesterov``, ``amsgrad``, ...)
    rebuilds the transform.  Keys that the optimizer does not use (``initial_lr`` added by a
    scheduler, your own notes) are simply stored.
    """

    def __init__(self, owner: GroupOwner, index: int, values: dict[str, Any]) -> None:
        # a weak reference: the optimizer owns its groups, not the other way round (no cycle,
        # and a deep copy of the groups does not copy the optimizer)
        self._owner = weakref.ref(owner)
        self._index = index
        self._values = values

    @property
    def _optimizer(self) -> GroupOwner:
        owner = self._owner()
        if owner is None:
            raise ReferenceError("this param_group's optimizer no longer exists")
        return owner

    def __getitem__(self, key: str) -> Any:
        if key == "params":
            return self._optimizer._group_leaves(self._index)
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "params":
            raise ValueError(
                "a group's 'params' cannot be reassigned; use optimizer.add_param_group for "
                "new parameters"
            )
        self._values[key] = value
        owner = self._owner()
        if owner is not None:  # a group outliving its optimizer is a plain mapping
            owner._mark_dirty(self._index, key)

    def __delitem__(self, key: str) -> None:
        owner = self._owner()
        if key == "params" or (owner is not None and key in owner._hyperparameter_names):
            raise KeyError(f"cannot delete {key!r}: the optimizer needs it")
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        yield "params"
        yield from self._values

    def __len__(self) -> int:
        return len(self._values) + 1

    def __repr__(self) -> str:
        body = ", ".join(f"{k!r}: {v!r}" for k, v in self._values.items())
        owner = self._owner()
        n = "?" if owner is None else len(owner._group_leaves(self._index))
        return f"ParamGroup({{'params': [{n} arrays], {body}}})"

"""The ``param_groups`` view: a host-side mirror of one group's hyperparameters."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._optimizer import Optimizer


class ParamGroup(MutableMapping):
    """One entry of ``optimizer.param_groups``: torch's keys in torch's order, ``"params"``
    first (the group's current leaves).

    Values are plain Python objects kept on the host, so reading ``group["lr"]`` never waits
    for the device.  Writing a value marks it for the next ``step()``: a numeric value is copied
    into the optax state (no recompilation); a structural one (``nesterov``, ``amsgrad``, ...)
    rebuilds the transform.  Keys that the optimizer does not use (``initial_lr`` added by a
    scheduler, your own notes) are simply stored.
    """

    def __init__(self, optimizer: Optimizer, index: int, values: dict[str, Any]) -> None:
        self._optimizer = optimizer
        self._index = index
        self._values = values

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
        self._optimizer._mark_dirty(self._index, key)

    def __delitem__(self, key: str) -> None:
        if key == "params" or key in self._optimizer._hyperparameter_names:
            raise KeyError(f"cannot delete {key!r}: the optimizer needs it")
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        yield "params"
        yield from self._values

    def __len__(self) -> int:
        return len(self._values) + 1

    def __repr__(self) -> str:
        body = ", ".join(f"{k!r}: {v!r}" for k, v in self._values.items())
        n = len(self._optimizer._group_indices[self._index])
        return f"ParamGroup({{'params': [{n} arrays], {body}}})"

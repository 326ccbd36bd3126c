"""torch's optimizer hooks: step pre/post hooks (per optimizer and global), state-dict and
load-state-dict pre/post hooks, with torch's handles, call order and return-value rules.

- step: the global pre hooks, then the optimizer's, each ``hook(optimizer, args, kwargs)``
  (``args`` starts with the optimizer itself, as torch's) returning ``None`` or a new
  ``(args, kwargs)``; the step; then the optimizer's post hooks, then the global ones.
- ``state_dict()``: ``hook(optimizer)`` before; ``hook(optimizer, state_dict)`` after, whose
  non-``None`` result replaces the state dict.
- ``load_state_dict(sd)``: on a shallow copy of ``sd``, ``hook(optimizer, sd)`` before (a
  non-``None`` result replaces it); ``hook(optimizer)`` after.

A method overridden by a subclass is wrapped once (:func:`hooked`); the hooks run once per
call even when the override calls ``super()``.  Without any hook a call costs one dict lookup.
"""

from __future__ import annotations

import functools
import itertools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

_GLOBAL: dict[str, OrderedDict[int, Callable]] = {
    "step_pre": OrderedDict(),
    "step_post": OrderedDict(),
}
_NEXT_ID = itertools.count()


class RemovableHandle:
    """What a ``register_*_hook`` returns: ``remove()`` unregisters the hook (also as a
    context manager, at exit)."""

    def __init__(self, hooks: OrderedDict[int, Callable]) -> None:
        self.id = next(_NEXT_ID)
        self._hooks = hooks

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def add(hooks: OrderedDict[int, Callable], hook: Callable, prepend: bool = False) -> Any:
    """Register ``hook`` in ``hooks`` (first when ``prepend``); its handle."""
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {type(hook).__name__}: {hook!r}")
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    return handle


def own(optimizer: Any, kind: str) -> OrderedDict[int, Callable]:
    """The optimizer's hooks of ``kind`` (created at the first registration)."""
    table = optimizer.__dict__.setdefault("_hooks", {})
    return table.setdefault(kind, OrderedDict())


def register_optimizer_step_pre_hook(hook: Callable) -> RemovableHandle:
    """A step pre hook for every optimizer: ``hook(optimizer, args, kwargs) -> None or
    (new_args, new_kwargs)``, run before each optimizer's own pre hooks."""
    return add(_GLOBAL["step_pre"], hook)


def register_optimizer_step_post_hook(hook: Callable) -> RemovableHandle:
    """A step post hook for every optimizer: ``hook(optimizer, args, kwargs)``, run after each
    optimizer's own post hooks."""
    return add(_GLOBAL["step_post"], hook)


def _step(optimizer: Any, method: Callable, args: tuple, kwargs: dict) -> Any:
    table = optimizer.__dict__.get("_hooks", {})
    args = (optimizer, *args)
    for hook in [*_GLOBAL["step_pre"].values(), *table.get("step_pre", {}).values()]:
        result = hook(optimizer, args, kwargs)
        if result is not None:
            if isinstance(result, tuple) and len(result) == 2:
                args, kwargs = result
            else:
                raise RuntimeError(
                    f"{method} must return None or a tuple of (new_args, new_kwargs), but got "
                    f"{result}."
                )
    out = method(*args, **kwargs)
    for hook in [*table.get("step_post", {}).values(), *_GLOBAL["step_post"].values()]:
        hook(optimizer, args, kwargs)
    return out


def _state_dict(optimizer: Any, method: Callable, args: tuple, kwargs: dict) -> Any:
    table = optimizer.__dict__.get("_hooks", {})
    for hook in list(table.get("state_dict_pre", {}).values()):
        hook(optimizer)
    state_dict = method(optimizer, *args, **kwargs)
    for hook in list(table.get("state_dict_post", {}).values()):
        result = hook(optimizer, state_dict)
        if result is not None:
            state_dict = result
    return state_dict


def _load_state_dict(optimizer: Any, method: Callable, args: tuple, kwargs: dict) -> Any:
    table = optimizer.__dict__.get("_hooks", {})
    (state_dict,) = args
    state_dict = dict(state_dict)  # a shallow copy, as torch's
    for hook in list(table.get("load_state_dict_pre", {}).values()):
        result = hook(optimizer, state_dict)
        if result is not None:
            state_dict = result
    method(optimizer, state_dict, **kwargs)
    for hook in list(table.get("load_state_dict_post", {}).values()):
        hook(optimizer)


_RUNNERS = {"step": _step, "state_dict": _state_dict, "load_state_dict": _load_state_dict}
_KINDS = {
    "step": ("step_pre", "step_post"),
    "state_dict": ("state_dict_pre", "state_dict_post"),
    "load_state_dict": ("load_state_dict_pre", "load_state_dict_post"),
}


def hooked(name: str, method: Callable) -> Callable:
    """``method`` (the optimizer's ``step``, ``state_dict`` or ``load_state_dict``) running its
    hooks; a method already wrapped is returned as it is."""
    if getattr(method, "_runs_hooks", False):
        return method
    runner, kinds = _RUNNERS[name], _KINDS[name]

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        table = self.__dict__.get("_hooks") or {}
        global_hooks = name == "step" and (_GLOBAL["step_pre"] or _GLOBAL["step_post"])
        if not global_hooks and not any(table.get(k) for k in kinds):
            return method(self, *args, **kwargs)
        running = self.__dict__.setdefault("_hooks_running", set())
        if name in running:  # an override calling super(): the hooks already run
            return method(self, *args, **kwargs)
        running.add(name)
        try:
            return runner(self, method, args, kwargs)
        finally:
            running.discard(name)

    wrapper._runs_hooks = True  # type: ignore[attr-defined]
    return wrapper


class Hooks:
    """torch's hook registration methods of an optimizer (mixed into ``Optimizer``); a
    subclass's own ``step`` / ``state_dict`` / ``load_state_dict`` run the hooks too."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _RUNNERS:
            if name in cls.__dict__:
                setattr(cls, name, hooked(name, cls.__dict__[name]))

    def register_step_pre_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs) -> None or (new_args, new_kwargs)`` before each
        ``step`` (after the global pre hooks); ``args`` starts with the optimizer."""
        return add(own(self, "step_pre"), hook)

    def register_step_post_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(optimizer, args, kwargs)`` after each ``step`` (before the global ones)."""
        return add(own(self, "step_post"), hook)

    def register_state_dict_pre_hook(
        self, hook: Callable, prepend: bool = False
    ) -> RemovableHandle:
        """``hook(optimizer)`` before ``state_dict()`` builds the state dict."""
        return add(own(self, "state_dict_pre"), hook, prepend)

    def register_state_dict_post_hook(
        self, hook: Callable, prepend: bool = False
    ) -> RemovableHandle:
        """``hook(optimizer, state_dict) -> None or a state dict`` (which replaces it) after
        ``state_dict()``."""
        return add(own(self, "state_dict_post"), hook, prepend)

    def register_load_state_dict_pre_hook(
        self, hook: Callable, prepend: bool = False
    ) -> RemovableHandle:
        """``hook(optimizer, state_dict) -> None or a state dict`` (loaded instead) before
        ``load_state_dict``, on a shallow copy of the given state dict."""
        return add(own(self, "load_state_dict_pre"), hook, prepend)

    def register_load_state_dict_post_hook(
        self, hook: Callable, prepend: bool = False
    ) -> RemovableHandle:
        """``hook(optimizer)`` after ``load_state_dict`` has loaded."""
        return add(own(self, "load_state_dict_post"), hook, prepend)

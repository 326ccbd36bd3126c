"""What torch says about one optimizer, declared once beside its maths.

Each transform module ends with a :class:`TorchSpec`: the transform factory, torch's
``param_group`` keys in torch's order, which values are fixed by the class (AdamW's decoupled
decay), which numbers are structural (rebuild on change) rather than traced, the state entries
torch keeps and its conditions for them, and, for the optimizers with a CPU kernel, a
:class:`KernelAdapter`.  The stateful classes (:mod:`jaxsched.optim`), their ``state_dict``,
the kernels and the tests all read these declarations; the torch signature itself is written
once more, typed, on the class's ``__init__`` (and a test checks it against torch's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import optax

# A torch condition for a per-parameter state entry, from the group's values and its state.
StateCondition = Callable[[Mapping[str, Any], Any], bool]


@dataclasses.dataclass(frozen=True)
class KernelAdapter:
    """How one optimizer runs on the CPU kernels (``csrc/fused_cpu.cc``).

    ``entry`` names the library's entry points (``jaxsched_<entry>_f32`` / ``_f64``) and its
    scalar struct, whose fields are ``scalar_names`` in order (checked against the library at
    load).  The kernel does the elementwise part; the adapter supplies everything else from
    the same formulas as the transform:

    - ``derive(values)``: host-side scalars in double from the group's Python values (the ones
      that cancel when rounded first, e.g. ``1 - beta2``), uploaded once per change;
    - ``scalars(hyper, derived, state)``: the kernel's scalars by name for one step (traced);
    - ``advance(state, hyper)``: the state's scalar fields after the step (``count``, ...);
    - ``flags(statics)``: the kernel's compile-time boolean attributes;
    - ``buffers(statics)``: the per-parameter state fields the kernel updates, in its order.
    """

    entry: str
    scalar_names: tuple[str, ...]
    derive: Callable[[Mapping[str, Any]], dict[str, float]]
    scalars: Callable[[Mapping[str, Any], Mapping[str, Any], Any], dict[str, Any]]
    advance: Callable[[Any, Mapping[str, Any]], dict[str, Any]]
    flags: Callable[[Mapping[str, Any]], dict[str, bool]]
    buffers: Callable[[Mapping[str, Any]], tuple[str, ...]]


@dataclasses.dataclass(frozen=True)
class TorchSpec:
    """One ``torch.optim`` class, as the stateful layer needs it.

    - ``name``: torch's class name; ``factory``: the transform (:mod:`jaxsched.transforms`).
      The stateful layer calls it with each traced number as a :class:`~._common.SplitFloat`
      (the float32 rounding and the rest of the user's double), so it reads its numbers
      through :func:`~._common.value_at` / :func:`~._common.complement`, as every transform
      here does.
    - ``keys``: torch's ``param_group`` keys after ``"params"``, in torch's order (also the
      order of ``defaults``); the factory takes those it names.
    - ``fixed``: keys the class sets itself (not in its signature).
    - ``static_args``: numeric keys that shape the computation (loop counts, sizes): held as
      Python values; writing one rebuilds, as for a boolean.
    - ``from_constructor``: keys torch reads from the constructor for every group (a group's
      own value is stored but not used).
    - ``step_entry``: torch keeps a per-parameter ``"step"``; ``state_at_construction``: torch
      creates the state in ``__init__`` rather than at the first step.
    - ``state_when``: per-parameter state entries torch keeps only under a condition; the
      transform's other state fields are torch's entries by the same name.
    - ``kernel``: the CPU kernel adapter, or ``None``.
    - ``skips_missing``: ``step`` accepts ``None`` gradients (torch skips those parameters),
      running the transform per parameter (:func:`~._per_parameter.per_parameter`).
    - ``options``: keyword-only constructor arguments of ours beyond torch's signature (Muon's
      ``orientation``): passed to the factory for every group, not part of ``param_groups``
      or the state dict.
    """

    name: str
    factory: Callable[..., optax.GradientTransformation]
    keys: tuple[str, ...]
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    static_args: frozenset[str] = frozenset()
    from_constructor: tuple[str, ...] = ()
    step_entry: bool = True
    state_at_construction: bool = False
    state_when: Mapping[str, StateCondition] = dataclasses.field(default_factory=dict)
    kernel: KernelAdapter | None = None
    skips_missing: bool = True
    options: tuple[str, ...] = ()


def words(names: str) -> tuple[str, ...]:
    """``"lr momentum"`` -> ``("lr", "momentum")``: key lists written as torch prints them."""
    return tuple(names.split())

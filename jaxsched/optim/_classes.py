"""torch.optim's classes: each one's typed torch signature over its spec (declared beside
its maths in :mod:`jaxsched.transforms`; the registry is ``transforms._registry.SPECS``)."""

from __future__ import annotations

from typing import Any

from ..transforms._registry import SPECS
from ._optimizer import Optimizer


class SGD(Optimizer):
    """``torch.optim.SGD``; the update is :func:`jaxsched.sgd`."""

    spec = SPECS["SGD"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class Adam(Optimizer):
    """``torch.optim.Adam``; the update is :func:`jaxsched.adam`."""

    spec = SPECS["Adam"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class AdamW(Optimizer):
    """``torch.optim.AdamW``; the update is :func:`jaxsched.adamw`."""

    spec = SPECS["AdamW"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class Adagrad(Optimizer):
    """``torch.optim.Adagrad``; the update is :func:`jaxsched.adagrad`."""

    spec = SPECS["Adagrad"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class Adadelta(Optimizer):
    """``torch.optim.Adadelta``; the update is :func:`jaxsched.adadelta`."""

    spec = SPECS["Adadelta"]

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class Adamax(Optimizer):
    """``torch.optim.Adamax``; the update is :func:`jaxsched.adamax`."""

    spec = SPECS["Adamax"]

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class ASGD(Optimizer):
    """``torch.optim.ASGD``; the update is :func:`jaxsched.asgd`."""

    spec = SPECS["ASGD"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class NAdam(Optimizer):
    """``torch.optim.NAdam``; the update is :func:`jaxsched.nadam`."""

    spec = SPECS["NAdam"]

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class RAdam(Optimizer):
    """``torch.optim.RAdam``; the update is :func:`jaxsched.radam`."""

    spec = SPECS["RAdam"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class RMSprop(Optimizer):
    """``torch.optim.RMSprop``; the update is :func:`jaxsched.rmsprop`."""

    spec = SPECS["RMSprop"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class Rprop(Optimizer):
    """``torch.optim.Rprop``; the update is :func:`jaxsched.rprop`."""

    spec = SPECS["Rprop"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class Adafactor(Optimizer):
    """``torch.optim.Adafactor``; the update is :func:`jaxsched.adafactor`."""

    spec = SPECS["Adafactor"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, self._arguments(locals()))


class Muon(Optimizer):
    """``torch.optim.Muon`` (2-D parameters only); the update is :func:`jaxsched.muon`.

    ``orientation`` (ours, keyword-only): ``"flax"`` (default) for kernels stored ``(in, out)``,
    ``"torch"`` for ``(out, in)`` weights; see :func:`jaxsched.muon`.
    """

    spec = SPECS["Muon"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        orientation: str = "flax",
    ) -> None:
        super().__init__(params, self._arguments(locals()), {"orientation": orientation})


class SparseAdam(Optimizer):
    """``torch.optim.SparseAdam``; the update is :func:`jaxsched.sparse_adam`.

    ``step(grads)`` takes a tree of ``jax.experimental.sparse.BCOO`` gradients (one per
    parameter, of its shape); a dense gradient raises torch's ``RuntimeError``.  The state dict
    holds torch's ``step`` as a Python int."""

    spec = SPECS["SparseAdam"]

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, self._arguments(locals()))

    def _grad_leaves(self, grads: Any) -> list[Any]:
        try:  # a BCOO is a pytree itself: read the tree only down to the parameters' leaves
            return self._treedef.flatten_up_to(grads)
        except (ValueError, TypeError):
            raise self._mismatch(grads) from None

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        for entry in out["state"].values():
            entry["step"] = int(entry["step"])
        return out

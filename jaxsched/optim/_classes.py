"""torch.optim's classes over the torch-exact transforms: signatures, defaults, key order."""

from __future__ import annotations

from typing import Any, ClassVar

from .. import transforms as T
from ._optimizer import Optimizer


class SGD(Optimizer):
    """``torch.optim.SGD``; the update is :func:`jaxsched.sgd`."""

    _factory = staticmethod(T.sgd)
    _keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize", "foreach",
             "differentiable", "fused")  # fmt: skip
    _has_step = False
    # torch's buffer exists once a step used momentum (and stays while the momentum is 0)
    _conditional: ClassVar[dict] = {
        "momentum_buffer": lambda g, s: int(s.momentum_steps) > 0,
        "momentum_steps": lambda g, s: False,  # ours: torch's "the buffer exists"
    }

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused))  # fmt: skip


_ADAM_KEYS = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach", "capturable",
              "differentiable", "fused", "decoupled_weight_decay")  # fmt: skip


class Adam(Optimizer):
    """``torch.optim.Adam``; the update is :func:`jaxsched.adam`."""

    _factory = staticmethod(T.adam)
    _keys = _ADAM_KEYS

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                                      capturable=capturable, differentiable=differentiable,
                                      fused=fused,
                                      decoupled_weight_decay=decoupled_weight_decay))  # fmt: skip


class AdamW(Optimizer):
    """``torch.optim.AdamW``; the update is :func:`jaxsched.adamw`."""

    _factory = staticmethod(T.adamw)
    _keys = _ADAM_KEYS

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                                      capturable=capturable, differentiable=differentiable,
                                      fused=fused, decoupled_weight_decay=True))  # fmt: skip


class Adagrad(Optimizer):
    """``torch.optim.Adagrad``; the update is :func:`jaxsched.adagrad`."""

    _factory = staticmethod(T.adagrad)
    _keys = ("lr", "lr_decay", "eps", "weight_decay", "initial_accumulator_value", "foreach",
             "maximize", "differentiable", "fused")  # fmt: skip
    _state_from_start = True

    def _factory_kwargs(self, values: Any) -> dict[str, Any]:
        # torch fills every group's accumulator from the constructor's value (a group's own
        # initial_accumulator_value is stored but never used); so does this class.
        kwargs = super()._factory_kwargs(values)
        kwargs["initial_accumulator_value"] = self.defaults["initial_accumulator_value"]
        return kwargs

    def __init__(self, params: Any, lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps,
                                      weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      foreach=foreach, maximize=maximize,
                                      differentiable=differentiable, fused=fused))  # fmt: skip


class Adadelta(Optimizer):
    """``torch.optim.Adadelta``; the update is :func:`jaxsched.adadelta`."""

    _factory = staticmethod(T.adadelta)
    _keys = ("lr", "rho", "eps", "weight_decay", "maximize", "capturable", "foreach",
             "differentiable")  # fmt: skip

    def __init__(self, params: Any, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: bool | None = None, *,
                 capturable: bool = False, maximize: bool = False,
                 differentiable: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, capturable=capturable, foreach=foreach,
                                      differentiable=differentiable))  # fmt: skip


class Adamax(Optimizer):
    """``torch.optim.Adamax``; the update is :func:`jaxsched.adamax`."""

    _factory = staticmethod(T.adamax)
    _keys = ("lr", "betas", "eps", "weight_decay", "foreach", "maximize", "differentiable",
             "capturable")  # fmt: skip

    def __init__(self, params: Any, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False,
                 capturable: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      foreach=foreach, maximize=maximize,
                                      differentiable=differentiable,
                                      capturable=capturable))  # fmt: skip


class ASGD(Optimizer):
    """``torch.optim.ASGD``; the update is :func:`jaxsched.asgd`."""

    _factory = staticmethod(T.asgd)
    _keys = ("lr", "lambd", "alpha", "t0", "weight_decay", "foreach", "maximize",
             "differentiable", "capturable")  # fmt: skip

    def __init__(self, params: Any, lr: float = 1e-2, lambd: float = 1e-4, alpha: float = 0.75,
                 t0: float = 1e6, weight_decay: float = 0, foreach: bool | None = None,
                 maximize: bool = False, differentiable: bool = False,
                 capturable: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0,
                                      weight_decay=weight_decay, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable,
                                      capturable=capturable))  # fmt: skip


class NAdam(Optimizer):
    """``torch.optim.NAdam``; the update is :func:`jaxsched.nadam`."""

    _factory = staticmethod(T.nadam)
    _keys = ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay",
             "maximize", "foreach", "capturable", "differentiable")  # fmt: skip

    def __init__(self, params: Any, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize, foreach=foreach,
                                      capturable=capturable,
                                      differentiable=differentiable))  # fmt: skip


class RAdam(Optimizer):
    """``torch.optim.RAdam``; the update is :func:`jaxsched.radam`."""

    _factory = staticmethod(T.radam)
    _keys = ("lr", "betas", "eps", "weight_decay", "maximize", "foreach", "capturable",
             "decoupled_weight_decay", "differentiable")  # fmt: skip

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      differentiable=differentiable))  # fmt: skip


class RMSprop(Optimizer):
    """``torch.optim.RMSprop``; the update is :func:`jaxsched.rmsprop`."""

    _factory = staticmethod(T.rmsprop)
    _keys = ("lr", "momentum", "alpha", "eps", "centered", "weight_decay", "capturable",
             "foreach", "maximize", "differentiable")  # fmt: skip
    _conditional: ClassVar[dict] = {
        "momentum_buffer": lambda g, s: g["momentum"] > 0,
        "grad_avg": lambda g, s: g["centered"],
    }

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps,
                                      centered=centered, weight_decay=weight_decay,
                                      capturable=capturable, foreach=foreach,
                                      maximize=maximize,
                                      differentiable=differentiable))  # fmt: skip


class Rprop(Optimizer):
    """``torch.optim.Rprop``; the update is :func:`jaxsched.rprop`."""

    _factory = staticmethod(T.rprop)
    _keys = ("lr", "etas", "step_sizes", "foreach", "maximize", "differentiable", "capturable")

    def __init__(self, params: Any, lr: float = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50), *, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, etas=etas, step_sizes=step_sizes, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable,
                                      capturable=capturable))  # fmt: skip


class Adafactor(Optimizer):
    """``torch.optim.Adafactor``; the update is :func:`jaxsched.adafactor`."""

    _factory = staticmethod(T.adafactor)
    _keys = ("lr", "beta2_decay", "eps", "d", "weight_decay", "foreach", "maximize")

    def __init__(self, params: Any, lr: float = 1e-2, beta2_decay: float = -0.8,
                 eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0,
                 weight_decay: float = 0.0, *, foreach: bool | None = None,
                 maximize: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d,
                                      weight_decay=weight_decay, foreach=foreach,
                                      maximize=maximize))  # fmt: skip

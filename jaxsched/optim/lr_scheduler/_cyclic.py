"""CosineAnnealingWarmRestarts, CyclicLR and OneCycleLR (non-chainable; CyclicLR and OneCycleLR
also write the momentum, or Adam's ``beta1``)."""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

from ..._validation import check_cycle
from ._base import LRScheduler, check_optimizer, per_group


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR (torch ``CosineAnnealingWarmRestarts``); ``step(epoch)`` accepts fractional epochs
    and, as in torch, does not warn."""

    _state_keys = ("T_0", "T_cur", "T_i", "T_mult", "eta_min")

    def __init__(
        self, optimizer: Any, T_0: int, T_mult: int = 1, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        if T_0 <= 0 or not isinstance(T_0, int):
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if T_mult < 1 or not isinstance(T_mult, int):
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        if not isinstance(eta_min, (float, int)):
            raise ValueError(
                f"Expected float or int eta_min, but got {eta_min} of type {type(eta_min)}"
            )
        check_optimizer(optimizer)
        self.T_0, self.T_i, self.T_mult, self.eta_min = T_0, T_0, T_mult, eta_min
        self.T_cur: float = last_epoch  # torch's epoch may be fractional (step(epoch=2.5))
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_outside_step()
        eta = self.eta_min
        return [
            eta + (b - eta) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
            for b in self.base_lrs
        ]

    def step(self, epoch: float | None = None) -> None:
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"Expected non-negative epoch, but got {epoch}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult**n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        self._get_lr_called_within_step = True
        try:
            values = self.get_lr()
        finally:
            self._get_lr_called_within_step = False
        self._write("lr", values)


def _momentum_key(optimizer: Any) -> bool:
    """True when the optimizer cycles ``betas[0]``, False for ``momentum`` (torch's rule)."""
    defaults = getattr(optimizer, "defaults", {})
    if "momentum" not in defaults and "betas" not in defaults:
        raise ValueError(
            "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
        )
    return "betas" in defaults


def _write_momentum(scheduler: Any, values: list[float]) -> None:
    for group, value in zip(scheduler.optimizer.param_groups, values, strict=True):
        if scheduler.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value


class CyclicLR(LRScheduler):
    """Cyclical learning rate and momentum (torch ``CyclicLR``), stepped every batch."""

    _state_keys = ("_scale_fn_custom", "base_momentums", "cycle_momentum", "gamma", "max_lrs",
                   "max_momentums", "mode", "scale_mode", "step_ratio", "total_size",
                   "use_beta1")  # fmt: skip

    def __init__(
        self, optimizer: Any, base_lr: Any, max_lr: Any, step_size_up: float = 2000,
        step_size_down: float | None = None, mode: str = "triangular", gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None, scale_mode: str = "cycle",
        cycle_momentum: bool = True, base_momentum: Any = 0.8, max_momentum: Any = 0.9,
        last_epoch: int = -1,
    ) -> None:  # fmt: skip
        check_optimizer(optimizer)
        self.optimizer = optimizer
        base_lrs = per_group("base_lr", optimizer, base_lr)
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups, strict=True):
                group["lr"] = lr
        self.max_lrs = per_group("max_lr", optimizer, max_lr)
        up = float(step_size_up)
        down = float(step_size_down) if step_size_down is not None else up
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")
        self.mode, self.gamma = mode, gamma
        self._scale_fn_custom = scale_fn
        self.scale_mode = scale_mode
        if scale_fn is None:
            self.scale_mode = "iterations" if mode == "exp_range" else "cycle"
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = _momentum_key(optimizer)
            self.base_momentums = per_group("base_momentum", optimizer, base_momentum)
            self.max_momentums = per_group("max_momentum", optimizer, max_momentum)
            if last_epoch == -1:
                _write_momentum(self, self.max_momentums)
                for m_max, m_base, group in zip(
                    self.max_momentums, self.base_momentums, optimizer.param_groups, strict=True
                ):
                    group["max_momentum"] = m_max
                    group["base_momentum"] = m_base
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def state_dict(self) -> dict[str, Any]:
        """torch's: a custom ``scale_fn`` is saved as ``None`` when it is a plain function or
        lambda, as a copy of its ``__dict__`` when it is a callable object (so the state dict
        pickles without the function)."""
        state = super().state_dict()
        fn = self._scale_fn_custom
        state["_scale_fn_custom"] = (
            None if fn is None or isinstance(fn, types.FunctionType) else dict(fn.__dict__)
        )
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's: a saved callable object's ``__dict__`` updates this scheduler's own
        ``scale_fn`` (the function itself is never replaced by what was saved)."""
        state = dict(state_dict)
        saved = state.pop("_scale_fn_custom", None)
        super().load_state_dict(state)
        if isinstance(saved, dict) and self._scale_fn_custom is not None:
            self._scale_fn_custom.__dict__.update(saved)

    def scale_fn(self, x: float) -> float:
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma**x

    def get_lr(self) -> list[float]:
        self._warn_outside_step()
        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle
        if x <= self.step_ratio:
            scale_factor = x / self.step_ratio
        else:
            scale_factor = (x - 1) / (self.step_ratio - 1)
        arg = cycle if self.scale_mode == "cycle" else self.last_epoch
        lrs = [
            b + (m - b) * scale_factor * self.scale_fn(arg)
            for b, m in zip(self.base_lrs, self.max_lrs, strict=True)
        ]
        if self.cycle_momentum:
            _write_momentum(self, [
                m_max - (m_max - m_base) * scale_factor * self.scale_fn(arg)
                for m_base, m_max in zip(self.base_momentums, self.max_momentums, strict=True)
            ])  # fmt: skip
        return lrs


class OneCycleLR(LRScheduler):
    """The 1cycle policy (torch ``OneCycleLR``), stepped every batch; writes ``initial_lr``,
    ``max_lr``, ``min_lr`` (and the momentum keys) into the groups."""

    _state_keys = ("_anneal_func_type", "_schedule_phases", "cycle_momentum", "total_steps",
                   "use_beta1")  # fmt: skip

    def __init__(
        self, optimizer: Any, max_lr: Any, total_steps: int | None = None,
        epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
        anneal_strategy: str = "cos", cycle_momentum: bool = True, base_momentum: Any = 0.85,
        max_momentum: Any = 0.95, div_factor: float = 25.0, final_div_factor: float = 1e4,
        three_phase: bool = False, last_epoch: int = -1,
    ) -> None:  # fmt: skip
        check_optimizer(optimizer)
        self.optimizer = optimizer
        self.total_steps = check_cycle(
            total_steps, epochs, steps_per_epoch, pct_start, anneal_strategy, show=str
        )
        t = self.total_steps
        if three_phase:
            self._schedule_phases = [
                _phase(float(pct_start * t) - 1, "initial_lr", "max_lr", "max_momentum",
                       "base_momentum"),
                _phase(float(2 * pct_start * t) - 2, "max_lr", "initial_lr", "base_momentum",
                       "max_momentum"),
                _phase(t - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]  # fmt: skip
        else:
            self._schedule_phases = [
                _phase(float(pct_start * t) - 1, "initial_lr", "max_lr", "max_momentum",
                       "base_momentum"),
                _phase(t - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]  # fmt: skip
        self._anneal_func_type = anneal_strategy
        max_lrs = per_group("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for peak, group in zip(max_lrs, optimizer.param_groups, strict=True):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = _momentum_key(optimizer)
            maxes = per_group("max_momentum", optimizer, max_momentum)
            bases = per_group("base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                _write_momentum(self, maxes)
                for m_max, m_base, group in zip(maxes, bases, optimizer.param_groups, strict=True):
                    group["max_momentum"] = m_max
                    group["base_momentum"] = m_base
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self._anneal_func_type == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        self._warn_outside_step()
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(
                f"Tried to step {step} times. The specified number of total steps is "
                f"{self.total_steps}"
            )
        lrs, momenta = [], []
        last = len(self._schedule_phases) - 1
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end = phase["end_step"]
                if step <= end or i == last:
                    pct = (step - start) / (end - start)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        momenta.append(self._anneal(
                            group[phase["start_momentum"]], group[phase["end_momentum"]], pct
                        ))  # fmt: skip
                    break
                start = end
        if self.cycle_momentum:
            _write_momentum(self, momenta)
        return lrs


def _phase(end: float, start_lr: str, end_lr: str, start_m: str, end_m: str) -> dict[str, Any]:
    return {"end_step": end, "start_lr": start_lr, "end_lr": end_lr, "start_momentum": start_m,
            "end_momentum": end_m}  # fmt: skip

"""Every torch optimizer jaxsched reproduces: one row per :class:`TorchSpec`.

A new optimizer is one module (its maths and its spec) plus one row here and its class in
:mod:`jaxsched.optim` (the typed torch signature).  The kernels' loader and the tests read this
table.
"""

from __future__ import annotations

from ._adadelta import ADADELTA
from ._adafactor import ADAFACTOR
from ._adagrad import ADAGRAD
from ._adam import ADAM, ADAMW
from ._adamax import ADAMAX
from ._asgd import ASGD
from ._lbfgs import LBFGS
from ._muon import MUON
from ._nadam import NADAM
from ._radam import RADAM
from ._rmsprop import RMSPROP
from ._rprop import RPROP
from ._sgd import SGD
from ._sparse_adam import SPARSE_ADAM
from ._spec import KernelAdapter, TorchSpec

SPECS: dict[str, TorchSpec] = {
    spec.name: spec
    for spec in (SGD, ADAM, ADAMW, ADAGRAD, ADADELTA, ADAMAX, ASGD, NADAM, RADAM, RMSPROP,
                 RPROP, ADAFACTOR, MUON, LBFGS, SPARSE_ADAM)
}  # fmt: skip


def kernel_entries() -> dict[str, tuple[str, ...]]:
    """``{entry point: its scalar names}`` over every spec with a kernel adapter; two adapters
    sharing an entry point (Adam and AdamW) must name its scalars alike."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in SPECS.values():
        adapter: KernelAdapter | None = spec.kernel
        if adapter is None:
            continue
        if out.setdefault(adapter.entry, adapter.scalar_names) != adapter.scalar_names:
            raise ValueError(
                f"{spec.name}'s kernel adapter names the {adapter.entry!r} scalars "
                f"{adapter.scalar_names}, another adapter {out[adapter.entry]}"
            )
    return out

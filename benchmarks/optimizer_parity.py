"""Parity report: each jaxsched optimizer and its optax namesake against torch.optim.

Run:  python benchmarks/optimizer_parity.py [--steps 1000]

Same random gradients for all three (params of shapes (4, 3), (5,), ()); Muon on 2-D
parameters, SparseAdam on random row-sparse gradients, LBFGS on a logistic regression (it
evaluates the loss itself: 30 outer steps of up to 6 iterations); the figure is the
worst leaf's max|ours - torch| / max|torch| (the tests' measure) after ``--steps`` steps, in
float32 and float64 (torch in the same precision).  The optax column maps torch's arguments onto the
nearest optax call, as a migrating user would write it.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import jaxsched as J

SHAPES = ((4, 3), (5,), ())


def random_problem(steps: int, seed: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Initial parameters and ``steps`` gradients (float64)."""
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in SHAPES]
    return params, [[rng.normal(size=s) for s in SHAPES] for _ in range(steps)]


def torch_run(cls, kwargs, params, grads, precision: str) -> list[np.ndarray]:
    dtype = getattr(torch, precision)
    tensors = [torch.tensor(p, dtype=dtype, requires_grad=True) for p in params]
    opt = cls(tensors, **kwargs)
    for g in grads:
        for t, x in zip(tensors, g, strict=True):
            t.grad = torch.tensor(x, dtype=dtype)
        opt.step()
    return [t.detach().double().numpy() for t in tensors]


def optax_run(tx, params, grads, precision: str) -> list[np.ndarray]:
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    p = [jnp.asarray(x, dtype) for x in params]
    state = tx.init(p)

    @jax.jit
    def step(p, state, g):
        updates, state = tx.update(g, state, p)
        return optax.apply_updates(p, updates), state

    for g in grads:
        p, state = step(p, state, [jnp.asarray(x, dtype) for x in g])
    return [np.asarray(x, np.float64) for x in p]


def relative_difference(ours: list[np.ndarray], ref: list[np.ndarray]) -> float:
    """The worst leaf's max|ours - ref| over its own scale (floored at 1e-3 of the peak)."""
    peak = max(float(np.max(np.abs(r))) for r in ref)
    return max(
        float(np.max(np.abs(o - r))) / max(float(np.max(np.abs(r))), 1e-3 * peak)
        for o, r in zip(ours, ref, strict=True)
    )


O = torch.optim
ROWS = [
    (
        "SGD(momentum=0.9)",
        J.sgd,
        O.SGD,
        dict(lr=0.01, momentum=0.9),
        lambda: optax.sgd(0.01, momentum=0.9),
    ),
    (
        "SGD(momentum=0.9, dampening=0.1)",
        J.sgd,
        O.SGD,
        dict(lr=0.01, momentum=0.9, dampening=0.1),
        lambda: optax.sgd(0.01, momentum=0.9),
    ),
    ("Adam", J.adam, O.Adam, dict(lr=0.01), lambda: optax.adam(0.01)),
    (
        "Adam(amsgrad=True)",
        J.adam,
        O.Adam,
        dict(lr=0.01, amsgrad=True),
        lambda: optax.amsgrad(0.01),
    ),
    (
        "Adam(weight_decay=0.1)",
        J.adam,
        O.Adam,
        dict(lr=0.01, weight_decay=0.1),
        lambda: optax.chain(optax.add_decayed_weights(0.1), optax.adam(0.01)),
    ),
    ("AdamW (defaults)", J.adamw, O.AdamW, dict(lr=0.01), lambda: optax.adamw(0.01)),
    ("Adagrad", J.adagrad, O.Adagrad, dict(lr=0.1), lambda: optax.adagrad(0.1)),
    (
        "Adadelta",
        J.adadelta,
        O.Adadelta,
        dict(lr=1.0),
        lambda: optax.adadelta(1.0, rho=0.9, eps=1e-6),
    ),
    ("Adamax", J.adamax, O.Adamax, dict(lr=0.002), lambda: optax.adamax(0.002)),
    ("ASGD", J.asgd, O.ASGD, dict(lr=0.01), None),
    ("NAdam", J.nadam, O.NAdam, dict(lr=0.002), lambda: optax.nadam(0.002)),
    ("RAdam", J.radam, O.RAdam, dict(lr=0.001), lambda: optax.radam(0.001)),
    ("RMSprop", J.rmsprop, O.RMSprop, dict(lr=0.001), lambda: optax.rmsprop(0.001)),
    (
        "RMSprop(momentum=0.9)",
        J.rmsprop,
        O.RMSprop,
        dict(lr=0.001, momentum=0.9),
        lambda: optax.rmsprop(0.001, decay=0.99, eps=1e-8, eps_in_sqrt=False, momentum=0.9),
    ),
    ("Rprop", J.rprop, O.Rprop, dict(lr=0.01), lambda: optax.rprop(0.01)),
    ("Adafactor", J.adafactor, O.Adafactor, dict(lr=0.01), lambda: optax.adafactor(0.01)),
]


def muon_cells(steps: int) -> list[str]:
    """Muon on 2-D parameters (torch's (out, in) layout), same random gradients; optax.contrib's
    Muon as its namesake."""
    rng = np.random.default_rng(1)
    shapes = ((6, 4), (3, 5))
    params = [rng.normal(size=s) for s in shapes]
    grads = [[rng.normal(size=s) for s in shapes] for _ in range(steps)]
    cells = []
    for precision in ("float32", "float64"):
        jax.config.update("jax_enable_x64", precision == "float64")
        ref = torch_run(O.Muon, dict(lr=0.02), params, grads, precision)
        got = optax_run(J.muon(lr=0.02, orientation="torch"), params, grads, precision)
        cells.append(f"{relative_difference(got, ref):.1e}")
        if precision == "float32":
            ref32 = ref
    jax.config.update("jax_enable_x64", False)
    theirs = optax_run(optax.contrib.muon(0.02), params, grads, "float32")
    return [*cells, f"{relative_difference(theirs, ref32):.1e}"]


def _apply(tx, params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def sparse_adam_cells(steps: int) -> list[str]:
    """SparseAdam on a (12, 3) table, each step's gradient on 4 random rows (repeats summed)."""
    from jax.experimental import sparse

    rng = np.random.default_rng(2)
    table = rng.normal(size=(12, 3))
    rows = [rng.integers(0, 12, 4) for _ in range(steps)]
    values = [rng.normal(size=(4, 3)) for _ in range(steps)]
    cells = []
    for precision in ("float32", "float64"):
        jax.config.update("jax_enable_x64", precision == "float64")
        dtype = getattr(torch, precision)
        t = torch.tensor(table, dtype=dtype, requires_grad=True)
        opt = O.SparseAdam([t], lr=0.01)
        for r, v in zip(rows, values, strict=True):
            t.grad = torch.sparse_coo_tensor(
                torch.tensor(r)[None], torch.tensor(v, dtype=dtype), (12, 3)
            )
            opt.step()
        jdtype = jnp.float64 if precision == "float64" else jnp.float32
        tx = J.sparse_adam(lr=0.01)
        p = [jnp.asarray(table, jdtype)]
        state = tx.init(p)
        step = jax.jit(functools.partial(_apply, tx))
        for r, v in zip(rows, values, strict=True):
            g = sparse.BCOO((jnp.asarray(v, jdtype), jnp.asarray(r)[:, None]), shape=(12, 3))
            p, state = step(p, state, [g])
        got = [np.asarray(p[0], np.float64)]
        cells.append(f"{relative_difference(got, [t.detach().double().numpy()]):.1e}")
    jax.config.update("jax_enable_x64", False)
    return [*cells, "-"]


def lbfgs_cells(steps: int = 30) -> list[str]:
    """LBFGS (strong-Wolfe, history 3) on a logistic regression, ``steps`` outer steps."""
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(40, 4)), (rng.normal(size=40) > 0).astype(np.float64)
    w0 = rng.normal(size=4) * 0.1
    kwargs = dict(lr=1, max_iter=6, history_size=3, line_search_fn="strong_wolfe")
    cells = []
    for precision in ("float32", "float64"):
        jax.config.update("jax_enable_x64", precision == "float64")
        dtype = getattr(torch, precision)
        w = torch.tensor(w0, dtype=dtype, requires_grad=True)
        Xt, yt = torch.tensor(X, dtype=dtype), torch.tensor(y, dtype=dtype)
        opt = O.LBFGS([w], **kwargs)

        def closure(opt=opt, w=w, Xt=Xt, yt=yt):
            opt.zero_grad()
            z = Xt @ w
            loss = (torch.nn.functional.softplus(z) - yt * z).mean()
            loss.backward()
            return loss

        jdtype = jnp.float64 if precision == "float64" else jnp.float32
        ours = J.optim.LBFGS({"w": jnp.asarray(w0, jdtype)}, **kwargs)
        Xj, yj = jnp.asarray(X, jdtype), jnp.asarray(y, jdtype)

        def loss_fn(p, X, y):
            z = X @ p["w"]
            return (jnp.logaddexp(0.0, z) - y * z).mean()

        for _ in range(steps):
            opt.step(closure)
            ours.step(loss_fn, Xj, yj)
        got = [np.asarray(ours.params["w"], np.float64)]
        cells.append(f"{relative_difference(got, [w.detach().double().numpy()]):.1e}")
    jax.config.update("jax_enable_x64", False)
    return [*cells, "-"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    params, grads = random_problem(args.steps, seed=0)
    print(
        f"relative difference to torch after {args.steps} steps "
        "(worst leaf's max|Δ| / max|θ_torch|)"
    )
    print(f"{'torch optimizer':34s} {'jaxsched f32':>12s} {'jaxsched f64':>12s} {'optax f32':>10s}")
    for name, ours, cls, kwargs, namesake in ROWS:
        cells = []
        for precision in ("float32", "float64"):
            jax.config.update("jax_enable_x64", precision == "float64")
            ref = torch_run(cls, kwargs, params, grads, precision)
            got = optax_run(ours(**kwargs), params, grads, precision)
            cells.append(relative_difference(got, ref))
            if precision == "float32":
                ref32 = ref
        jax.config.update("jax_enable_x64", False)
        optax_cell = "-"
        if namesake is not None:
            got = optax_run(namesake(), params, grads, "float32")
            optax_cell = f"{relative_difference(got, ref32):.1e}"
        print(f"{name:34s} {cells[0]:12.1e} {cells[1]:12.1e} {optax_cell:>10s}")
    for name, cells in (
        (f"Muon(lr=0.02), {args.steps} steps", muon_cells(args.steps)),
        (f"SparseAdam, {args.steps} steps", sparse_adam_cells(args.steps)),
        ("LBFGS(strong_wolfe), 30 outer steps", lbfgs_cells()),
    ):
        print(f"{name:34s} {cells[0]:>12s} {cells[1]:>12s} {cells[2]:>10s}")


if __name__ == "__main__":
    main()

"""The usual Muon recipe, in torch and in jaxsched: Muon for the hidden 2-D weights, AdamW for
the embedding, the head and every bias.

Run:  python examples/muon_adamw.py [--steps 30]

A small MLP classifier (embedding 32 x 16 -> 32 -> 32 -> 10) on random tokens, float64,
trained three ways from the same weights on the same batches:

- torch: two optimizers over one model (``torch.optim.Muon`` and ``torch.optim.AdamW``);
- jaxsched, functional: one ``jaxsched.grouped`` transform with a factory per group (one line);
- jaxsched, stateful: ``optim.Muon`` and ``optim.AdamW`` over two parts of one parameter tree.

The flax-style kernels are stored ``(in, out)``; torch's ``nn.Linear`` weights ``(out, in)``:
jaxsched's Muon runs the Newton-Schulz iteration on the transpose (``orientation="flax"``, the
default), so each kernel receives the update torch gives its weight.  Printed per step: the
losses and the largest parameter difference of each jaxsched route against torch.

Muon's Newton-Schulz iteration runs in bfloat16 (torch's and ours); its float32 accumulations
inside a matrix product are summed in XLA's order here, in the BLAS's order in torch, and
where the two sums straddle a bfloat16 rounding boundary one entry differs by one bfloat16
ulp.  At this width that is rare (here: one entry, 6e-7 in the parameters, which training
does not amplify); from 64 on it is common enough that the iteration spreads it (64 x 64:
half the entries of the orthogonalised update one bfloat16 ulp apart after 5 iterations), so
with ``WIDTH = 64`` this example drifts to ~1e-2 after 10 steps.  See the README's Muon
section.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import jaxsched
from jaxsched import optim

jax.config.update("jax_enable_x64", True)

HIDDEN = ("dense1", "dense2")  # the 2-D weights Muon takes
WIDTH = 32
MUON = dict(lr=0.02, weight_decay=0.01)
ADAMW = dict(lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)


def init(rng) -> dict:
    return {
        "embed": rng.normal(size=(32, 16)) * 0.5,
        "dense1": {"kernel": rng.normal(size=(16, WIDTH)) / 4, "bias": np.zeros(WIDTH)},
        "dense2": {"kernel": rng.normal(size=(WIDTH, WIDTH)) / 8, "bias": np.zeros(WIDTH)},
        "head": {"kernel": rng.normal(size=(WIDTH, 10)) / 8, "bias": np.zeros(10)},
    }


def loss_fn(p, tokens, labels):
    h = p["embed"][tokens].mean(axis=1)
    h = jax.nn.relu(h @ p["dense1"]["kernel"] + p["dense1"]["bias"])
    h = jax.nn.relu(h @ p["dense2"]["kernel"] + p["dense2"]["bias"])
    logits = h @ p["head"]["kernel"] + p["head"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def label(params):
    """'muon' for the hidden kernels, 'adamw' for the rest (the recipe's rule)."""
    labels = jax.tree.map(lambda _: "adamw", params)
    for k in HIDDEN:
        labels[k]["kernel"] = "muon"
    return labels


class TorchModel(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        self.embed = torch.nn.Embedding(32, 16, dtype=torch.float64)
        self.dense1 = torch.nn.Linear(16, WIDTH, dtype=torch.float64)
        self.dense2 = torch.nn.Linear(WIDTH, WIDTH, dtype=torch.float64)
        self.head = torch.nn.Linear(WIDTH, 10, dtype=torch.float64)
        with torch.no_grad():
            self.embed.weight.copy_(torch.tensor(p["embed"]))
            for name in ("dense1", "dense2", "head"):
                getattr(self, name).weight.copy_(torch.tensor(p[name]["kernel"].T))  # (out, in)
                getattr(self, name).bias.copy_(torch.tensor(p[name]["bias"]))

    def forward(self, tokens):
        h = self.embed(tokens).mean(dim=1)
        h = torch.relu(self.dense2(torch.relu(self.dense1(h))))
        return self.head(h)

    def as_tree(self):
        tree = {"embed": self.embed.weight.detach().numpy()}
        for name in ("dense1", "dense2", "head"):
            layer = getattr(self, name)
            tree[name] = {
                "kernel": layer.weight.detach().numpy().T,
                "bias": layer.bias.detach().numpy(),
            }
        return tree


def gap(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    start = init(rng)
    batches = [(rng.integers(0, 32, (64, 5)), rng.integers(0, 10, 64)) for _ in range(args.steps)]

    # torch: two optimizers over one model
    model = TorchModel(start)
    hidden = [model.dense1.weight, model.dense2.weight]
    rest = [p for p in model.parameters() if all(p is not h for h in hidden)]
    torch_muon, torch_adamw = torch.optim.Muon(hidden, **MUON), torch.optim.AdamW(rest, **ADAMW)

    # jaxsched, functional: the recipe in one transform
    tx = jaxsched.grouped({"muon": jaxsched.muon, "adamw": jaxsched.adamw}, label,
                          {"muon": MUON, "adamw": ADAMW})  # fmt: skip
    params = jax.tree.map(jnp.asarray, start)
    state = tx.init(params)

    @jax.jit
    def train_step(params, state, tokens, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens, labels)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    # jaxsched, stateful: two optimizers over two parts of one tree
    hidden_tree = {k: {"kernel": jnp.asarray(start[k]["kernel"])} for k in HIDDEN}
    rest_tree = {"embed": jnp.asarray(start["embed"]),
                 "head": jax.tree.map(jnp.asarray, start["head"]),
                 **{k: {"bias": jnp.asarray(start[k]["bias"])} for k in HIDDEN}}  # fmt: skip
    muon, adamw = optim.Muon(hidden_tree, **MUON), optim.AdamW(rest_tree, **ADAMW)

    def whole(muon_part, adamw_part):  # the model's tree, assembled without copying
        tree = dict(adamw_part)
        for k in HIDDEN:
            tree[k] = {"kernel": muon_part[k]["kernel"], "bias": adamw_part[k]["bias"]}
        return tree

    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    for step, (tokens, labels) in enumerate(batches):
        for opt in (torch_muon, torch_adamw):
            opt.zero_grad()
        torch_loss = torch.nn.functional.cross_entropy(
            model(torch.tensor(tokens)), torch.tensor(labels)
        )
        torch_loss.backward()
        torch_muon.step()
        torch_adamw.step()

        params, state, loss = train_step(params, state, tokens, labels)

        _, grads = grad_fn(whole(muon.params, adamw.params), tokens, labels)
        muon.step({k: {"kernel": grads[k]["kernel"]} for k in HIDDEN})
        adamw.step({"embed": grads["embed"], "head": grads["head"],
                    **{k: {"bias": grads[k]["bias"]} for k in HIDDEN}})  # fmt: skip

        theirs = model.as_tree()
        print(f"step {step:3d}  loss {float(loss):.10f}  torch {float(torch_loss.detach()):.10f}  "
              f"max|Δθ| grouped {gap(params, theirs):.1e}  "
              f"two optimizers {gap(whole(muon.params, adamw.params), theirs):.1e}")  # fmt: skip


if __name__ == "__main__":
    main()

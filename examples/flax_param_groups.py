"""torch-style parameter groups on flax models: linen parameter dicts and nnx state.

Run:  python examples/flax_param_groups.py [--steps 60]

A small AlexNet-like linen model ("features" then "classifier") is trained with
``jaxsched.optim.SGD`` and two groups (features at the base lr, classifier at 1e-3), the
learning rate halved by hand half way through, as a torch recipe would write it; then the same
API drives an ``nnx`` model through ``nnx.state(model, nnx.Param)``.  Prints the loss, the
``param_groups`` keys, and a state_dict summary.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from jaxsched import optim


class Features(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), name="conv1")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(16, (3, 3), name="conv2")(x))
        return x.reshape(x.shape[0], -1)


class AlexNetLike(nn.Module):
    classes: int = 4

    @nn.compact
    def __call__(self, x):
        x = Features(name="features")(x)
        x = nn.relu(nn.Dense(32, name="fc1")(x))
        return nn.Dense(self.classes, name="fc2")(x)


def data(key, n=64):
    kx, kw = jax.random.split(key)
    x = jax.random.normal(kx, (n, 8, 8, 1))
    labels = jnp.argmax(x.reshape(n, -1) @ jax.random.normal(kw, (64, 4)), axis=-1)
    return x, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    x, y = data(jax.random.key(0))
    model = AlexNetLike()
    params = model.init(jax.random.key(1), x)["params"]
    features = {"features": params["features"]}
    classifier = {k: v for k, v in params.items() if k != "features"}
    opt = optim.SGD(
        [{"params": features}, {"params": classifier, "lr": 1e-3}], lr=0.05, momentum=0.9
    )
    print("param_groups[1] keys:", list(opt.param_groups[1]))

    @jax.jit
    def loss_and_grad(p):
        def loss_fn(p):
            logits = model.apply({"params": p}, x)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

        return jax.value_and_grad(loss_fn)(p)

    for step in range(args.steps):
        opt.zero_grad()  # a no-op, kept from the torch recipe
        loss, grads = loss_and_grad(opt.params)
        opt.step(grads)
        if step == args.steps // 2:
            for group in opt.param_groups:
                group["lr"] *= 0.5
        if step % 10 == 0 or step == args.steps - 1:
            lrs = [g["lr"] for g in opt.param_groups]
            print(f"step {step:3d}  loss {float(loss):.4f}  lrs {lrs}")
    sd = opt.state_dict()
    print(f"state_dict: {len(sd['state'])} parameters with", sorted(sd["state"][0]))

    linear = nnx.Linear(64, 4, rngs=nnx.Rngs(0))
    nopt = optim.Adam(nnx.state(linear, nnx.Param), lr=0.05)  # params: its pure dict
    graphdef = nnx.graphdef(linear)

    def nnx_loss(state):
        logits = nnx.merge(graphdef, state)(x.reshape(len(x), -1))
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

    first = float(nnx_loss(nopt.params))
    for _ in range(args.steps):
        nopt.step(jax.grad(nnx_loss)(nopt.params))
    nnx.update(linear, nopt.params)
    print(f"nnx Linear with optim.Adam: loss {first:.4f} -> {float(nnx_loss(nopt.params)):.4f}")


if __name__ == "__main__":
    main()

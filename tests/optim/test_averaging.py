"""``AveragedModel`` and the averaging functions against ``torch.optim.swa_utils``: the same
sequence of weights averaged on both sides, bit for bit on the CPU (float32 and float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import swa_utils as torch_swa

from jaxsched.optim import swa_utils
from tests.compile_counter import count_compiles

STEPS = 6
SHAPES = {"w": (7, 5), "b": (5,)}


def _weights(dtype: str) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()} for _ in range(STEPS)]


def _torch_model(first: dict) -> torch.nn.Module:
    model = torch.nn.Module()
    for k, v in first.items():
        model.register_parameter(k, torch.nn.Parameter(torch.tensor(v)))
    return model


FUNCTIONS = {
    "swa-default": ({}, {}),
    "ema-multi": (
        {"multi_avg_fn": torch_swa.get_ema_multi_avg_fn(0.9)},
        {"multi_avg_fn": swa_utils.get_ema_multi_avg_fn(0.9)},
    ),
    "ema-multi-heavy": (
        {"multi_avg_fn": torch_swa.get_ema_multi_avg_fn(0.3)},
        {"multi_avg_fn": swa_utils.get_ema_multi_avg_fn(0.3)},
    ),
    "swa-multi": (
        {"multi_avg_fn": torch_swa.get_swa_multi_avg_fn()},
        {"multi_avg_fn": swa_utils.get_swa_multi_avg_fn()},
    ),
    "ema-avg": (
        {"avg_fn": torch_swa.get_ema_avg_fn(0.999)},
        {"avg_fn": swa_utils.get_ema_avg_fn(0.999)},
    ),
    "swa-avg": (
        {"avg_fn": torch_swa.get_swa_avg_fn()},
        {"avg_fn": swa_utils.get_swa_avg_fn()},
    ),
    "custom": (
        {"avg_fn": lambda a, c, n: 0.5 * a + 0.5 * c},
        {"avg_fn": lambda a, c, n: 0.5 * a + 0.5 * c},
    ),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_averages_match_torch_bit_for_bit(name, precision):
    torch_kwargs, our_kwargs = FUNCTIONS[name]
    weights = _weights(precision)
    model = _torch_model(weights[0])
    theirs = torch_swa.AveragedModel(model, **torch_kwargs)
    ours = swa_utils.AveragedModel(jax.tree.map(jnp.asarray, weights[0]), **our_kwargs)
    for w in weights:
        with torch.no_grad():
            for k, v in w.items():
                getattr(model, k).copy_(torch.tensor(v))
        theirs.update_parameters(model)
        ours.update_parameters(jax.tree.map(jnp.asarray, w))
        for k in SHAPES:
            np.testing.assert_array_equal(
                np.asarray(ours.module[k]), getattr(theirs.module, k).detach().numpy(), err_msg=k
            )
    assert int(ours.n_averaged) == int(theirs.n_averaged) == STEPS


def test_linen_variables_buffers_follow_use_buffers(x64):
    rng = np.random.default_rng(1)
    steps = [
        {"params": {"w": rng.normal(size=3)}, "batch_stats": {"mean": rng.normal(size=3)}}
        for _ in range(4)
    ]
    synced = swa_utils.AveragedModel(jax.tree.map(jnp.asarray, steps[0]))
    averaged = swa_utils.AveragedModel(jax.tree.map(jnp.asarray, steps[0]), use_buffers=True)
    for s in steps:
        synced.update_parameters(jax.tree.map(jnp.asarray, s))
        averaged.update_parameters(jax.tree.map(jnp.asarray, s))
    mean_w = np.mean([s["params"]["w"] for s in steps], axis=0)
    np.testing.assert_allclose(synced.module["params"]["w"], mean_w, rtol=1e-14)
    np.testing.assert_array_equal(
        synced.module["batch_stats"]["mean"], steps[-1]["batch_stats"]["mean"]
    )
    mean_b = np.mean([s["batch_stats"]["mean"] for s in steps], axis=0)
    np.testing.assert_allclose(averaged.module["batch_stats"]["mean"], mean_b, rtol=1e-14)


def test_integer_buffers_truncate_as_torch():
    # torch's BatchNorm num_batches_tracked: a long buffer averaged with use_buffers=True
    model = torch.nn.BatchNorm1d(2)
    theirs = torch_swa.AveragedModel(model, use_buffers=True)
    ours = swa_utils.AveragedModel(
        {"params": {"weight": jnp.ones(2)}, "stats": {"n": jnp.zeros((), int)}}, use_buffers=True
    )
    for n in (3, 4, 10):
        model.num_batches_tracked.fill_(n)
        theirs.update_parameters(model)
        ours.update_parameters({"params": {"weight": jnp.ones(2)}, "stats": {"n": jnp.asarray(n)}})
        assert int(ours.module["stats"]["n"]) == int(theirs.module.num_batches_tracked)


def test_updates_compile_once_and_state_round_trips():
    weights = _weights("float32")
    ours = swa_utils.AveragedModel(jax.tree.map(jnp.asarray, weights[0]))
    ours.update_parameters(jax.tree.map(jnp.asarray, weights[0]))
    with count_compiles() as compiles:
        for w in weights[1:]:
            ours.update_parameters(jax.tree.map(jnp.asarray, w))
    assert compiles() == 0
    copy = swa_utils.AveragedModel(jax.tree.map(jnp.asarray, weights[0]))
    copy.load_state_dict(ours.state_dict())
    assert int(copy.n_averaged) == STEPS
    for k in SHAPES:
        np.testing.assert_array_equal(copy.module[k], ours.module[k])


def test_functional_average_inside_jit():
    avg = swa_utils.weight_average(multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.5))
    params = {"w": jnp.ones(3)}
    state = avg.init(params)

    @jax.jit
    def step(state, params):
        return avg.update(state, params)

    state = step(state, params)  # the first update copies
    state = step(state, {"w": jnp.full(3, 3.0)})
    np.testing.assert_allclose(state.averaged["w"], 2.0)
    assert int(state.n_averaged) == 2


def test_torchs_errors():
    with pytest.raises(ValueError, match=r"Invalid decay value 1.5 provided"):
        swa_utils.get_ema_avg_fn(1.5)
    with pytest.raises(ValueError, match=r"Invalid decay value -0.1 provided"):
        swa_utils.get_ema_multi_avg_fn(-0.1)
    with pytest.raises(AssertionError, match="Only one of avg_fn and multi_avg_fn"):
        swa_utils.AveragedModel(
            {"w": jnp.ones(2)},
            avg_fn=swa_utils.get_swa_avg_fn(),
            multi_avg_fn=swa_utils.get_swa_multi_avg_fn(),
        )


def test_update_bn_recomputes_linen_batch_stats_as_torch():
    from flax import linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            x = nn.BatchNorm(use_running_average=not train, epsilon=1e-5)(nn.Dense(8)(x))
            x = nn.relu(x)
            return nn.BatchNorm(use_running_average=not train, epsilon=1e-5)(nn.Dense(4)(x))

    rng = np.random.default_rng(0)
    loader = [(rng.normal(size=(16, 3)).astype(np.float32) * (i + 1), None) for i in range(3)]
    model = Net()
    variables = model.init(jax.random.key(0), jnp.ones((2, 3)), train=False)
    torch_model = torch.nn.Sequential(
        torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
        torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4),
    )  # fmt: skip
    with torch.no_grad():
        for index, name in ((0, "Dense_0"), (3, "Dense_1")):
            torch_model[index].weight.copy_(
                torch.tensor(np.asarray(variables["params"][name]["kernel"]).T)
            )
            torch_model[index].bias.copy_(
                torch.tensor(np.asarray(variables["params"][name]["bias"]))
            )
    torch_swa.update_bn([(torch.tensor(x), y) for x, y in loader], torch_model)
    new = swa_utils.update_bn(
        [(jnp.asarray(x), y) for x, y in loader], model, variables, train=True
    )
    for index, name in ((1, "BatchNorm_0"), (4, "BatchNorm_1")):
        stats = new["batch_stats"][name]
        np.testing.assert_allclose(
            stats["mean"], torch_model[index].running_mean.numpy(), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            stats["var"], torch_model[index].running_var.numpy(), rtol=1e-5, atol=1e-6
        )
    assert jax.tree.structure(new) == jax.tree.structure(variables)


def test_update_bn_recomputes_nnx_batchnorm_in_place_as_torch():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.conv = nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=rngs)
            self.norm = nnx.BatchNorm(4, momentum=0.9, use_running_average=True, rngs=rngs)
            self.dense = nnx.Linear(4, 5, rngs=rngs)
            self.head_norm = nnx.BatchNorm(5, use_running_average=True, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.norm(self.conv(x)))
            return self.head_norm(self.dense(x.mean(axis=(1, 2))))

    model = Net(nnx.Rngs(0))
    torch_model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5),
    )  # fmt: skip
    with torch.no_grad():
        torch_model[0].weight.copy_(
            torch.tensor(np.asarray(model.conv.kernel[...]).transpose(3, 2, 0, 1))
        )
        torch_model[0].bias.copy_(torch.tensor(np.asarray(model.conv.bias[...])))
        torch_model[5].weight.copy_(torch.tensor(np.asarray(model.dense.kernel[...]).T))
        torch_model[5].bias.copy_(torch.tensor(np.asarray(model.dense.bias[...])))
    rng = np.random.default_rng(1)
    loader = [rng.normal(size=(4, 6, 6, 3)).astype(np.float32) * (i + 1) + i for i in range(3)]
    torch_swa.update_bn([torch.tensor(x).permute(0, 3, 1, 2) for x in loader], torch_model)
    assert swa_utils.update_bn([(jnp.asarray(x), 0) for x in loader], model) is None
    for module, index in ((model.norm, 1), (model.head_norm, 6)):
        np.testing.assert_allclose(
            module.mean[...], torch_model[index].running_mean.numpy(), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            module.var[...], torch_model[index].running_var.numpy(), rtol=1e-5, atol=1e-6
        )
    # the pass changed the statistics only: settings back as they were
    assert model.norm.momentum == 0.9 and model.norm.use_running_average is True
    assert model.norm.use_fast_variance is True


def test_update_bn_nnx_refuses_a_batchnorm_called_twice_and_variables():
    from flax import nnx

    class Twice(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.norm = nnx.BatchNorm(2, rngs=rngs)

        def __call__(self, x):
            return self.norm(self.norm(x))

    model = Twice(nnx.Rngs(0))
    with pytest.raises(NotImplementedError, match=r"BatchNorm at norm ran 2 times"):
        swa_utils.update_bn([jnp.ones((3, 2))], model)
    assert model.norm.momentum == 0.99 and model.norm.use_running_average is False
    with pytest.raises(TypeError, match="pass no variables"):
        swa_utils.update_bn([jnp.ones((3, 2))], model, {"params": {}})

"""torch_to_flax / flax_to_torch: layouts checked by running both frameworks on one input,
names matched or refused with both lists, placement and dtypes kept."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxsched import interop

from .models import LinenCNN, NnxCNN, TorchCNN


def nchw_to_nhwc(x):
    return np.moveaxis(x, 1, -1)


LAYERS = {
    "conv1d": (lambda: torch.nn.Conv1d(3, 5, 3, padding=1),
               lambda: nn.Conv(5, (3,), padding=1), (2, 3, 8)),
    "conv2d-groups": (lambda: torch.nn.Conv2d(4, 6, (3, 2), stride=2, groups=2),
                      lambda: nn.Conv(6, (3, 2), strides=2, padding="VALID",
                                      feature_group_count=2), (2, 4, 7, 6)),
    "conv3d": (lambda: torch.nn.Conv3d(2, 3, 2),
               lambda: nn.Conv(3, (2, 2, 2), padding="VALID"), (1, 2, 4, 4, 4)),
    "linear": (lambda: torch.nn.Linear(5, 3), lambda: nn.Dense(3), (4, 5)),
    "layernorm": (lambda: torch.nn.LayerNorm(5), lambda: nn.LayerNorm(epsilon=1e-5), (4, 5)),
}  # fmt: skip


@pytest.mark.parametrize(("torch_layer", "flax_layer", "shape"), LAYERS.values(), ids=LAYERS)
def test_layouts_give_torchs_outputs(torch_layer, flax_layer, shape):
    torch.manual_seed(0)
    layer = torch_layer()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p))  # norms' ones and zeros would hide a swap
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    flax_x = nchw_to_nhwc(x) if len(shape) > 2 else x
    module = flax_layer()
    params = module.init(jax.random.key(0), jnp.asarray(flax_x))
    converted = interop.torch_to_flax(layer.state_dict(), params)
    got = np.asarray(module.apply(converted, jnp.asarray(flax_x)))
    expected = layer(torch.tensor(x)).detach().numpy()
    expected = nchw_to_nhwc(expected) if len(shape) > 2 else expected
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    back = interop.flax_to_torch(converted, names=layer.state_dict())
    for name, tensor in layer.state_dict().items():
        assert torch.equal(back[name], tensor)


@pytest.mark.parametrize("transpose_kernel", [False, True])
def test_nnx_conv_transpose_is_recognised_by_its_class(transpose_kernel):
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(3, 3, (3, 2), stride=2)  # square: shapes cannot tell
    module = nnx.ConvTranspose(
        3, 3, (3, 2), strides=2, padding="VALID", transpose_kernel=transpose_kernel,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    interop.torch_to_flax(layer.state_dict(), module)
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    expected = nchw_to_nhwc(layer(torch.tensor(x)).detach().numpy())
    np.testing.assert_allclose(
        np.asarray(module(jnp.asarray(nchw_to_nhwc(x)))), expected, rtol=1e-5, atol=1e-5
    )
    back = interop.flax_to_torch(module)
    assert torch.equal(back["weight"], layer.weight.detach())


def test_linen_conv_transpose_by_layout_rule_and_embedding():
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose1d(2, 4, 3, stride=2)
    module = nn.ConvTranspose(4, (3,), strides=(2,), padding="VALID")
    x = np.random.default_rng(0).normal(size=(1, 2, 5)).astype(np.float32)
    params = module.init(jax.random.key(0), jnp.asarray(nchw_to_nhwc(x)))
    converted = interop.torch_to_flax(
        layer.state_dict(), params, layouts={"weight": "conv_transpose"}
    )
    np.testing.assert_allclose(
        np.asarray(module.apply(converted, jnp.asarray(nchw_to_nhwc(x)))),
        nchw_to_nhwc(layer(torch.tensor(x)).detach().numpy()), rtol=1e-5, atol=1e-5,
    )  # fmt: skip
    embedding = torch.nn.Embedding(7, 3)
    table = interop.torch_to_flax(embedding.state_dict(), {"embedding": jnp.zeros((7, 3))})
    np.testing.assert_array_equal(table["embedding"], embedding.weight.detach().numpy())


def test_names_that_do_not_match_are_listed_both_ways():
    torch_model = TorchCNN()
    variables = LinenCNN().init(jax.random.key(0), jnp.ones((1, 7, 7, 3)))
    sd = dict(torch_model.state_dict())
    sd["extra.weight"] = sd.pop("fc.weight")
    with pytest.raises(ValueError) as error:
        interop.torch_to_flax(sd, variables)
    message = str(error.value)
    assert "torch entries without a flax leaf ['extra.weight']" in message
    assert "flax leaves without a torch entry ['params.fc.kernel']" in message
    # a rule renames it back; None drops an entry on purpose
    sd["junk"] = torch.zeros(1)
    out = interop.torch_to_flax(sd, variables, rules={r"extra\.(.*)": r"fc.\1", "junk": None})
    np.testing.assert_array_equal(out["params"]["fc"]["kernel"], sd["extra.weight"].numpy().T)
    # a callback works the same way
    callback = lambda n: None if n == "junk" else re.sub(r"^extra\.", "fc.", n)  # noqa: E731
    interop.torch_to_flax(sd, variables, rules=callback)


def test_a_shape_that_no_layout_fits_is_refused():
    layer = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"torch shape \(2, 3\) does not fit.*\(2, 3\)"):
        interop.torch_to_flax(
            layer.state_dict(), {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(2)}
        )
    with pytest.raises(ValueError, match=r"the linear layout makes \(2, 3\) into \(3, 2\)"):
        interop.torch_to_flax(
            layer.state_dict(), {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(2)},
            layouts={"weight": "linear"},
        )  # fmt: skip
    with pytest.raises(ValueError, match="unknown layout 'diagonal'"):
        interop.torch_to_flax(
            layer.state_dict(),
            {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)},
            layouts={"weight": "diagonal"},
        )


def test_a_custom_layout_and_two_flax_leaves_with_one_torch_name():
    layer = torch.nn.Linear(3, 2)
    doubled = interop.Layout("doubled", lambda w: 2 * w.T, lambda w: w.T / 2)
    out = interop.torch_to_flax(
        layer.state_dict(), {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)},
        layouts={"weight": doubled},
    )  # fmt: skip
    np.testing.assert_allclose(out["kernel"], 2 * layer.weight.detach().numpy().T)
    with pytest.raises(ValueError, match="both read as torch's 'weight'"):
        interop.torch_to_flax(
            layer.state_dict(), {"kernel": jnp.zeros((3, 2)), "scale": jnp.zeros(2)}
        )


def test_dtype_and_sharding_of_the_target_are_kept(x64):
    layer = torch.nn.Linear(3, 2).double()
    device = jax.devices()[0]
    sharding = jax.sharding.SingleDeviceSharding(device)
    target = {
        "kernel": jax.ShapeDtypeStruct((3, 2), jnp.float32, sharding=sharding),
        "bias": jax.device_put(jnp.zeros(2, jnp.bfloat16), device),
    }
    with pytest.warns(UserWarning, match=r"2 torch tensors were rounded.*float64 -> float32"):
        out = interop.torch_to_flax(layer.state_dict(), target)
    assert out["kernel"].dtype == jnp.float32 and out["kernel"].sharding == sharding
    assert out["bias"].dtype == jnp.bfloat16
    back = interop.flax_to_torch(out, names=layer.state_dict())
    assert back["weight"].dtype == torch.float64  # the torch model's dtype
    bf16 = interop.flax_to_torch(out)
    assert bf16["bias"].dtype == torch.bfloat16


def test_nnx_state_and_module_targets():
    torch.manual_seed(0)
    torch_model = TorchCNN()
    model = NnxCNN(nnx.Rngs(0))
    state = nnx.state(model)
    converted = interop.torch_to_flax(torch_model.state_dict(), state)
    assert isinstance(converted, nnx.State)
    assert not np.array_equal(state["fc"]["kernel"][...], converted["fc"]["kernel"][...])
    np.testing.assert_array_equal(
        converted["layer1"][0]["kernel"][...],
        torch_model.layer1[0].weight.detach().numpy().transpose(2, 3, 1, 0),
    )
    assert interop.torch_to_flax(torch_model.state_dict(), model) is model
    back = interop.flax_to_torch(model, names=torch_model.state_dict())
    assert list(back) == list(torch_model.state_dict())
    for name, tensor in torch_model.state_dict().items():
        assert torch.equal(back[name], tensor), name


@settings(max_examples=40, deadline=None)
@given(
    layout=st.sampled_from(["same", "linear", "conv", "conv_transpose"]),
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=5),
)
def test_every_layout_is_inverted_by_its_way_back(layout, shape):
    from jaxsched.interop._layouts import named

    if layout == "linear":
        shape = shape[:2]
    if layout.startswith("conv") and len(shape) < 3:
        shape = [*shape, 2]
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    chosen = named(layout)
    there = chosen.to_flax(x)
    assert there.shape == chosen.flax_shape(tuple(shape))
    np.testing.assert_array_equal(chosen.to_torch(there), x)


def test_a_torch_model_tells_its_square_transposed_convolutions():
    """From a state dict a square ConvTranspose kernel reads as a convolution; from the model
    itself it is recognised, both ways."""

    class Up(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.up = torch.nn.ConvTranspose2d(3, 3, 2, stride=2)

    torch.manual_seed(0)
    model = Up()
    module = nn.ConvTranspose(3, (2, 2), strides=(2, 2), padding="VALID")
    x = np.random.default_rng(0).normal(size=(1, 3, 3, 3)).astype(np.float32)
    params = {"up": module.init(jax.random.key(0), jnp.asarray(nchw_to_nhwc(x)))["params"]}
    converted = interop.torch_to_flax(model, params)
    got = module.apply({"params": converted["up"]}, jnp.asarray(nchw_to_nhwc(x)))
    expected = nchw_to_nhwc(model.up(torch.tensor(x)).detach().numpy())
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)
    back = interop.flax_to_torch(converted, names=model)
    assert torch.equal(back["up.weight"], model.up.weight.detach())
    wrong = interop.torch_to_flax(model.state_dict(), params)  # the documented ambiguity
    assert not np.allclose(wrong["up"]["kernel"], converted["up"]["kernel"])


def test_nnx_rng_state_is_left_alone():
    """A Dropout's RNG key and count have no torch counterpart: only parameters and batch
    statistics are converted, the rest of the model is kept."""

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.fc = nnx.Linear(3, 2, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    sd = {"fc.weight": layer.weight.detach(), "fc.bias": layer.bias.detach()}
    model = Net(nnx.Rngs(0))
    key = np.asarray(jax.random.key_data(model.drop.rngs.key[...]))
    interop.torch_to_flax(sd, model)
    np.testing.assert_array_equal(model.fc.kernel[...], layer.weight.detach().numpy().T)
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(model.drop.rngs.key[...])), key)
    state = interop.torch_to_flax(sd, nnx.state(model))
    assert "drop" in state and np.array_equal(state["fc"]["bias"][...], layer.bias.detach())
    assert list(interop.flax_to_torch(model)) == ["fc.bias", "fc.weight"]

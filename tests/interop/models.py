"""Twin models for the interop tests: the same network in torch and in flax (linen and nnx),
named as a torch user and a flax user would name them."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import torch
from flax import linen as nn
from flax import nnx

# -- a torchvision-style CNN: conv, BatchNorm, a Sequential block, a classifier ---------------


class TorchCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 6, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(6)
        self.layer1 = torch.nn.Sequential(
            torch.nn.Conv2d(6, 6, 3, padding=1), torch.nn.BatchNorm2d(6)
        )
        self.norm = torch.nn.GroupNorm(2, 6)
        self.fc = torch.nn.Linear(6, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.norm(self.layer1(x) + x))
        return self.fc(x.mean(dim=(2, 3)))


class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        bn = dict(use_running_average=not train, momentum=0.9, epsilon=1e-5)
        x = nn.Conv(6, (3, 3), padding="VALID", use_bias=False, name="conv1")(x)
        x = nn.relu(nn.BatchNorm(name="bn1", **bn)(x))
        y = nn.Conv(6, (3, 3), padding=1, name="layer1_0")(x)
        y = nn.BatchNorm(name="layer1_1", **bn)(y)
        x = nn.relu(nn.GroupNorm(num_groups=2, epsilon=1e-5, name="norm")(y + x))
        return nn.Dense(4, name="fc")(x.mean(axis=(1, 2)))


class NnxCNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, dtype=jnp.float32) -> None:
        kw = dict(param_dtype=dtype, dtype=dtype, rngs=rngs)
        self.conv1 = nnx.Conv(3, 6, (3, 3), padding="VALID", use_bias=False, **kw)
        self.bn1 = nnx.BatchNorm(6, momentum=0.9, epsilon=1e-5, **kw)
        self.layer1 = nnx.List(
            [nnx.Conv(6, 6, (3, 3), padding=1, **kw), nnx.BatchNorm(6, momentum=0.9, **kw)]
        )
        self.norm = nnx.GroupNorm(6, num_groups=2, epsilon=1e-5, **kw)
        self.fc = nnx.Linear(6, 4, **kw)

    def __call__(self, x):
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.relu(self.norm(self.layer1[1](self.layer1[0](x)) + x))
        return self.fc(x.mean(axis=(1, 2)))


# -- a nanoGPT-style transformer with tied embeddings ------------------------------------------

VOCAB, WIDTH, CONTEXT, LAYERS = 11, 8, 5, 2


class TorchBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(WIDTH)
        self.attn = torch.nn.Module()
        self.attn.c_attn = torch.nn.Linear(WIDTH, 3 * WIDTH)
        self.attn.c_proj = torch.nn.Linear(WIDTH, WIDTH)
        mask = torch.tril(torch.ones(CONTEXT, CONTEXT)).view(1, CONTEXT, CONTEXT)
        self.attn.register_buffer("bias", mask)  # nanoGPT's causal mask buffer
        self.ln_2 = torch.nn.LayerNorm(WIDTH)
        self.mlp = torch.nn.Module()
        self.mlp.c_fc = torch.nn.Linear(WIDTH, 4 * WIDTH)
        self.mlp.c_proj = torch.nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x):
        T = x.shape[1]
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(WIDTH, dim=2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(WIDTH)
        att = att.masked_fill(self.attn.bias[:, :T, :T] == 0, float("-inf")).softmax(dim=-1)
        x = x + self.attn.c_proj(att @ v)
        return x + self.mlp.c_proj(torch.nn.functional.gelu(self.mlp.c_fc(self.ln_2(x))))


class TorchGPT(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.transformer = torch.nn.ModuleDict(
            dict(
                wte=torch.nn.Embedding(VOCAB, WIDTH),
                wpe=torch.nn.Embedding(CONTEXT, WIDTH),
                h=torch.nn.ModuleList([TorchBlock() for _ in range(LAYERS)]),
                ln_f=torch.nn.LayerNorm(WIDTH),
            )
        )
        self.lm_head = torch.nn.Linear(WIDTH, VOCAB, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying

    def forward(self, idx):
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


class Attn(nn.Module):
    @nn.compact
    def __call__(self, x):
        T = x.shape[1]
        q, k, v = jnp.split(nn.Dense(3 * WIDTH, name="c_attn")(x), 3, axis=2)
        att = (q @ jnp.swapaxes(k, -2, -1)) / math.sqrt(WIDTH)
        att = jnp.where(jnp.tril(jnp.ones((T, T))) == 0, -jnp.inf, att)
        return nn.Dense(WIDTH, name="c_proj")(jax.nn.softmax(att, axis=-1) @ v)


class Mlp(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.gelu(nn.Dense(4 * WIDTH, name="c_fc")(x), approximate=False)
        return nn.Dense(WIDTH, name="c_proj")(x)


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x + Attn(name="attn")(nn.LayerNorm(epsilon=1e-5, name="ln_1")(x))
        return x + Mlp(name="mlp")(nn.LayerNorm(epsilon=1e-5, name="ln_2")(x))


class LinenGPT(nn.Module):
    @nn.compact
    def __call__(self, idx):
        wte = nn.Embed(VOCAB, WIDTH, name="wte")
        x = wte(idx) + nn.Embed(CONTEXT, WIDTH, name="wpe")(jnp.arange(idx.shape[1]))
        for i in range(LAYERS):
            x = Block(name=f"h_{i}")(x)
        return wte.attend(nn.LayerNorm(epsilon=1e-5, name="ln_f")(x))  # tied head


# torch's names -> the flax tree's: drop the "transformer." prefix and the causal-mask buffers
GPT_RULES = {r".*\.attn\.bias": None, r"transformer\.(.*)": r"\1"}

"""The fusion network (encoder mean-pool + numeric features -> small MLP head) and batching helpers."""
from __future__ import annotations

import contextlib
import copy
import re
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that are not padding (how MiniLM was trained)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class FusionHead(nn.Module):
    """Wide and deep: a linear term over the standardised features (a logistic regression)
    plus an MLP over [text embedding ; features] -> hidden -> logit.

    The wide term lets `fit` start from a fitted logistic regression (linear probing before
    fine-tuning), so fine-tuning only has to learn what the text adds on top of the numbers.
    """

    def __init__(self, hidden_size: int, n_features: int, head_hidden: int, dropout: float):
        super().__init__()
        self.wide = nn.Linear(n_features, 1)
        self.dropout_in = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size + n_features, head_hidden)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(head_hidden, 1)

    def forward(self, embedding: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.dropout_in(embedding), features], dim=-1)
        deep = self.out(self.dropout(self.act(self.dense(x))))
        return (deep + self.wide(features.to(deep.dtype))).squeeze(-1)


class FusionModel(nn.Module):
    """The encoder and the head trained together."""

    def __init__(self, encoder: nn.Module, n_features: int, head_hidden: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.head = FusionHead(encoder.config.hidden_size, n_features, head_hidden, dropout)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return embed_with(self.encoder, batch)

    def forward(self, batch: dict[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(batch), features)


def embed_with(encoder: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    hidden = encoder(**batch).last_hidden_state
    return mean_pool(hidden, batch["attention_mask"])


def pad_batch(
    token_lists: list[list[int]], pad_id: int, device: torch.device, *, with_token_types: bool
) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of this batch only (dynamic padding)."""
    width = max(len(ids) for ids in token_lists)
    ids = np.full((len(token_lists), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(token_lists), width), dtype=np.int64)
    for row, tokens in enumerate(token_lists):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    batch = {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": torch.from_numpy(mask).to(device)}
    if with_token_types:
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    return batch


def embed_token_lists(
    encoder: nn.Module, token_lists: list[list[int]], *, pad_id: int, device: torch.device, batch_size: int,
    with_token_types: bool, cpu_precision: str = "fp32", sort: bool = True,
) -> np.ndarray:
    """Mean-pooled encoder output per token list, float32 [n, hidden], in the order given.

    Run in inference mode in batches of similar length (`sort`), each padded to its longest row;
    `cpu_precision` must match `encoder` ("int8" for a quantised copy, else "bf16" / "fp32").
    """
    out = np.zeros((len(token_lists), encoder.config.hidden_size), dtype=np.float32)
    if not token_lists:
        return out
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    with torch.inference_mode(), autocast_for(device, cpu_precision):
        for index in length_sorted_batches(lengths, batch_size, sort=sort):
            batch = pad_batch([token_lists[i] for i in index], pad_id, device, with_token_types=with_token_types)
            out[index] = embed_with(encoder, batch).float().cpu().numpy()
    return out


def length_sorted_batches(lengths: np.ndarray, batch_size: int, *, sort: bool = True) -> Iterator[np.ndarray]:
    """Row positions in batches of similar length (longest first), so padding stays small."""
    order = np.argsort(-lengths, kind="stable") if sort else np.arange(len(lengths))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def autocast_for(device: torch.device, cpu_precision: str = "fp32"):
    """bf16 autocast on CUDA whatever `cpu_precision` says; on CPU only for "bf16". "fp32" and
    "int8" run plain: the int8 copy's quantised Linear layers must not be autocast."""
    if device.type == "cuda" or cpu_precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def training_batches(
    lengths: np.ndarray, batch_size: int, generator: torch.Generator, *, group_by_length: bool
) -> list[np.ndarray]:
    """One epoch of shuffled batches; optionally grouped by length like HF's LengthGroupedSampler
    (sort within shuffled mega-batches of 50 batches, then shuffle the batches)."""
    order = torch.randperm(len(lengths), generator=generator).numpy()
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches = []
    mega = 50 * batch_size
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


# FFN output projections ("layer.N.output.dense"), as opposed to "attention.output.dense".
_FFN_OUTPUT = re.compile(r"(?<!attention\.)output\.dense$")


def quantized_copy(encoder: nn.Module, *, include_ffn_output: bool) -> nn.Module:
    """An int8 dynamically quantised copy of the encoder's Linear layers (CPU inference only).

    torch.ao.quantization.quantize_dynamic still works on torch 2.13 but is deprecated in
    favour of torchao, which is not installed here; the warnings are silenced so that
    scoring logs stay readable.
    """
    names = {
        name
        for name, module in encoder.named_modules()
        if isinstance(module, nn.Linear) and (include_ffn_output or not _FFN_OUTPUT.search(name))
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(encoder).eval(), names, dtype=torch.qint8)


def param_groups(model: FusionModel, *, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm weights; the head gets its own lr."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "head" if name.startswith("head.") else "encoder"
        no_decay = param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        groups.setdefault((part, no_decay), []).append(param)
    return [
        {
            "params": params,
            "lr": head_lr if part == "head" else lr,
            "weight_decay": 0.0 if no_decay else weight_decay,
        }
        for (part, no_decay), params in groups.items()
    ]

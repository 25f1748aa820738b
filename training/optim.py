"""Optimizer parameter groups: weight decay on the weight matrices of nn.Linear layers only.

Norm gains and the (tied) embedding are not decayed, as in the paper's setup. The optimizer itself
is built by Hydra (`configs/optimizer/*.yaml`, `_partial_: true`) from these groups, and the
schedule sets each group's `lr` before every step (`set_lr`).
"""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    # A tied LM head shares its weight with the embedding: it counts as the embedding (no decay).
    decay_ids -= {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():  # parameters() yields a shared (tied) tensor once
        if p.requires_grad:
            (decay if id(p) in decay_ids else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

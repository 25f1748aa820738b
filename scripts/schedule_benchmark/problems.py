"""The benchmark's problems: small learning problems on data bundled with scikit-learn (no download).

Each problem is a dataset split once (fixed split seed, so every run sees the same data), a model
built from the run's seed, and an objective. Convex problems are tuned and ranked by their final
*train* objective (regularizer included; we also report its gap to the optimum f*, found by full-batch
L-BFGS); the non-convex one by its final *validation* loss.

    from scripts.schedule_benchmark.problems import PROBLEMS, load
    data = load(PROBLEMS["logreg_cancer"])        # tensors + f* (cached per process)

| name          | data (sklearn)          | n train / val | model              | convex |
|---------------|-------------------------|---------------|--------------------|--------|
| logreg_cancer | load_breast_cancer      | 455 / 114     | binary logistic    | yes    |
| logreg_digits | load_digits             | 1437 / 360    | multinomial logit  | yes    |
| lsq_diabetes  | load_diabetes           | 353 / 89      | least squares      | yes    |
| mlp_digits    | load_digits             | 1437 / 360    | 64-64-10 MLP, tanh | no     |

Peak-LR grids: 7 LRs spaced by 10^(1/2) (a factor 1000 in all) around an LR that pilot runs found
reasonable for the problem and optimizer: a first run with 5 LRs left 13 of 256 tuned LRs of the Chen
study on the grid's edge (short budgets and small-area schedules such as exponential want larger
LRs). A tuned LR on the edge of its grid is still flagged in the tables (`at_edge`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as F

SPLIT_SEED = 0          # the train/val split is part of the problem, not of the run's seed
VAL_FRACTION = 0.2
OPTIMIZERS = ("sgd", "adamw")


def lr_grid(center: float, n: int = 7) -> tuple[float, ...]:
    """n peak LRs spaced by 10^(1/2), centred (geometrically) on `center`, rounded to 3 digits."""
    exps = np.arange(n) - (n - 1) / 2
    return tuple(float(f"{center * 10 ** (e / 2):.3g}") for e in exps)


@dataclass(frozen=True, eq=False)   # hashed by identity: load() caches per problem
class Problem:
    name: str
    convex: bool
    loader: Callable[..., tuple]       # sklearn.datasets.load_* (return_X_y=True)
    kind: str                          # "binary" | "multiclass" | "regression": the loss
    hidden: int                        # 0: a linear model (convex); > 0: one tanh hidden layer
    l2: float                          # (l2 / 2) ||weights||^2 added to the objective (convex problems)
    batch_size: int
    lr_center: dict                    # optimizer -> centre of its peak-LR grid

    def lrs(self, optimizer: str) -> tuple[float, ...]:
        return lr_grid(self.lr_center[optimizer])

    @property
    def metric(self) -> str:
        """The column the LR is tuned on and schedules are ranked by."""
        return "final_train" if self.convex else "final_val"


PROBLEMS = {p.name: p for p in (
    Problem("logreg_cancer", True, datasets.load_breast_cancer, "binary", 0, 1e-3, 16,
            {"sgd": 0.3, "adamw": 0.1}),
    Problem("logreg_digits", True, datasets.load_digits, "multiclass", 0, 1e-3, 32,
            {"sgd": 0.1, "adamw": 0.03}),
    Problem("lsq_diabetes", True, datasets.load_diabetes, "regression", 0, 0.0, 16,
            {"sgd": 0.01, "adamw": 0.03}),
    Problem("mlp_digits", False, datasets.load_digits, "multiclass", 64, 0.0, 32,
            {"sgd": 0.1, "adamw": 0.01}),
)}
CONVEX = tuple(n for n, p in PROBLEMS.items() if p.convex)


def check_names(names, known, what: str) -> list[str]:
    """Validate user-given names against the known ones (a clear error naming the fix)."""
    names = list(names)
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise ValueError(f"unknown {what} {bad or names!r}; choose from {', '.join(known)}")
    return names


@dataclass(frozen=True)
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_out: int
    f_star: float                      # min of the train objective (convex; nan otherwise)


def build_model(problem: Problem, data: Data, seed: int) -> nn.Module:
    """The run's model, initialized from `seed` (torch's default init; the convex models start at a
    random point too, so that seeds differ in the start as well as in the minibatches)."""
    torch.manual_seed(seed)
    d = data.x_train.shape[1]
    if problem.hidden:
        return nn.Sequential(nn.Linear(d, problem.hidden), nn.Tanh(), nn.Linear(problem.hidden, data.n_out))
    return nn.Linear(d, data.n_out)


def loss_fn(problem: Problem, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The objective on (x, y): mean loss + (l2 / 2) ||W||^2 (weights only, no bias)."""
    out = model(x)
    if problem.kind == "binary":
        loss = F.binary_cross_entropy_with_logits(out.squeeze(1), y)
    elif problem.kind == "multiclass":
        loss = F.cross_entropy(out, y)
    else:
        loss = 0.5 * F.mse_loss(out.squeeze(1), y)
    if problem.l2:
        loss = loss + 0.5 * problem.l2 * sum((m.weight ** 2).sum() for m in model.modules()
                                             if isinstance(m, nn.Linear))
    return loss


@lru_cache(maxsize=None)
def load(problem: Problem) -> Data:
    """Split, standardize (train statistics) and convert to tensors; f* by L-BFGS for convex problems."""
    x, y = problem.loader(return_X_y=True)
    stratify = None if problem.kind == "regression" else y
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=VAL_FRACTION, random_state=SPLIT_SEED,
                                              stratify=stratify)
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_va = (torch.tensor(scaler.transform(a), dtype=torch.float32) for a in (x_tr, x_va))
    if problem.kind == "regression":        # standardized targets: one LR grid fits the loss scale
        mu, sd = y_tr.mean(), y_tr.std()
        y_tr, y_va = (torch.tensor((a - mu) / sd, dtype=torch.float32) for a in (y_tr, y_va))
        n_out = 1
    elif problem.kind == "binary":
        y_tr, y_va = (torch.tensor(a, dtype=torch.float32) for a in (y_tr, y_va))
        n_out = 1
    else:
        y_tr, y_va = (torch.tensor(a, dtype=torch.long) for a in (y_tr, y_va))
        n_out = int(y_tr.max()) + 1
    data = Data(x_tr, y_tr, x_va, y_va, n_out, float("nan"))
    if problem.convex:
        data = Data(x_tr, y_tr, x_va, y_va, n_out, _minimum(problem, data))
    return data


def _minimum(problem: Problem, data: Data) -> float:
    """f* of the convex train objective: full-batch L-BFGS (strong Wolfe) from zero to a tiny gradient."""
    model = build_model(problem, data, seed=0)
    for p in model.parameters():
        nn.init.zeros_(p)
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=5000, tolerance_grad=1e-9,
                            tolerance_change=1e-14, history_size=50, line_search_fn="strong_wolfe")
    x, y = data.x_train.double(), (data.y_train.double() if data.y_train.is_floating_point() else data.y_train)
    model.double()

    def closure():
        opt.zero_grad()
        loss = loss_fn(problem, model, x, y)
        loss.backward()
        return loss

    for _ in range(3):                     # restarts: L-BFGS may stop on its iteration budget
        opt.step(closure)
    with torch.no_grad():
        return float(loss_fn(problem, model, x, y))

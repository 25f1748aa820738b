"""Shared test helpers: compose the real configs in configs/ (as train.py does) with overrides.

Imported by pytest itself; its TINY overrides are the small model and loop that the end-to-end tests use.
"""

from __future__ import annotations

import os

import torch

# The Triton kernels (models/kernels) run on CPU only under the Triton interpreter, which triton reads
# when the kernels are defined (first import of models.kernels): set it before any test module loads.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path

import pytest
from omegaconf import DictConfig

from training.setup import CONFIG_DIR as _CONFIG_PATH
from training.setup import compose

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(_CONFIG_PATH)

# A model and loop small enough for a few-second CPU run; everything else is the real default.
TINY = [
    "model.n_layer=2", "model.n_head=2", "model.d_model=64",
    "trainer.seq_len=32", "trainer.batch_size=8", "trainer.micro_batch_size=4",
    "trainer.max_steps=20", "trainer.warmup_steps=4", "trainer.eval_interval=5", "trainer.eval_batches=2",
    "trainer.eval_batch_size=128",
    "trainer.log_interval=1", "trainer.checkpoint_interval=10", "trainer.keep_checkpoints=0",
    "trainer.progress=false", "trainer.device=cpu",
]

# The seeded reference run of tests/test_train.py, whose losses are frozen in GOLDEN. The clip
# threshold sits below the initial grad norm (~0.9) so that clipping is exercised.
REFERENCE = TINY + ["trainer.grad_clip=0.5"]
GOLDEN = ROOT / "tests" / "data" / "golden_tiny_run.json"


def compose_config(overrides: list[str] = ()) -> DictConfig:
    return compose(overrides)


@pytest.fixture
def tiny_cfg():
    """Factory: the real config with the TINY overrides plus the test's own."""
    return lambda *extra: compose_config(TINY + list(extra))


def save_weights(run_dir, model, cfg: DictConfig) -> Path:
    """A checkpoint of `model`'s weights alone (step 0, an empty optimizer), written by
    training.checkpoint.save with `cfg` beside it: what models.load and the model commands read."""
    from training import checkpoint
    from training.rng import rng_state

    state = {"model": model.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "step": 0,
             "tokens": 0, "loader": {}, "rng": rng_state()}
    return checkpoint.save(run_dir, state, cfg)

"""MFU and peak-FLOP/s look-up, and the MFU the trainer logs when a peak is configured."""

from __future__ import annotations

import pytest

from tests.conftest import TINY, compose_config
from training.metrics import mfu, peak_flops, read_metrics


@pytest.mark.parametrize("name, expected", [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("some new accelerator", None),
    (None, None),
])
def test_peak_flops_by_device_name(name, expected):
    assert peak_flops(name) == expected


def test_override_wins_and_mfu_is_the_ratio():
    assert peak_flops("NVIDIA H100 80GB HBM3", override=5e14) == 5e14
    # 124M at seq 512 doing 400k tokens/s on a 989 TFLOP/s GPU: (6N + 12 L d T) * 4e5 / 989e12
    flops = 6 * 123_587_328 + 12 * 12 * 768 * 512
    assert mfu(flops, 4e5, 989e12) == pytest.approx(flops * 4e5 / 989e12)
    assert 0.3 < mfu(flops, 4e5, 989e12) < 0.4
    assert mfu(flops, 4e5, None) is None


@pytest.mark.slow
def test_trainer_logs_mfu_against_the_configured_peak(tmp_path):
    from hydra.utils import instantiate

    from train import train

    cfg = compose_config(TINY + ["trainer.max_steps=3", "trainer.warmup_steps=1", "trainer.peak_flops=1e12",
                                 "trainer.checkpoint_interval=0"])
    train(cfg, tmp_path)
    flops_per_token = instantiate(cfg.model).flops_per_token(cfg.trainer.seq_len)
    for event in (e for e in read_metrics(tmp_path) if "mfu" in e):
        assert event["mfu"] == pytest.approx(flops_per_token * event["tok_per_s"] / 1e12)

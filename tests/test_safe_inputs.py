"""Inputs a hostile or careless user controls, refused before they act: a crafted schedule config in a
run directory read by the analysis (no code runs), and token shards with ids beyond the vocabulary
(refused when the data opens, naming the shard, its largest id, the vocabulary and the fix).

    python -m pytest -q tests/test_safe_inputs.py -p no:cacheprovider
"""
from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from analysis import advise, cli, extend, groups
from analysis.runs import load, load_many
from analysis.safe_schedule import build_schedule, check_schedule_config
from data import embedded, shards
from data.loader import BatchLoader
from data.tokens import TokenData
from schedules import WSD
from train import train

WSD_CONFIG = {"_target_": "schedules.WSD", "total_steps": 100, "warmup_steps": 10, "cooldown_fraction": 0.2}


def payload(marker: Path) -> dict:
    """A node that writes `marker` (a .npy path) when hydra.utils.instantiate builds it; Hydra 1.3.8's
    blocklist refuses os.system and exec, not this, and its own docs call it no security boundary."""
    return {"_target_": "numpy.save", "_args_": [str(marker), [1.0]]}


def write_run(path: Path, schedule: dict, lr: float = 1e-3, final: float = 3.0) -> Path:
    """A run directory as train.py writes it, finished at step 100 with final/val_loss `final`."""
    path.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"schedule": schedule, "optimizer": {"lr": lr}}), path / "config.yaml")
    rows = [{"step": 1, "train/loss": final + 1}, {"step": 100, "val/loss": final, "final/val_loss": final}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def crafted(marker: Path) -> dict:
    """Schedule configs that each run code under a plain instantiate, and the key that must be named."""
    return {
        "_target_": ({**payload(marker)}, r"_target_='numpy\.save'"),
        "nested": ({**WSD_CONFIG, "cooldown_kind": payload(marker)}, r"cooldown_kind\._(target|args)_"),
        "in_list": ({"_target_": "schedules.FromArray", "total_steps": 3, "source": [1.0, payload(marker)]},
                    r"source\.1\._(target|args)_"),
        "args": ({**WSD_CONFIG, "_args_": [payload(marker)]}, r"'_args_'"),
        "in_tuple": ({"_target_": "schedules.FromArray", "total_steps": 3, "source": (1.0, payload(marker))},
                     r"source\.1\._(target|args)_"),
    }


@pytest.mark.parametrize("kind", ["_target_", "nested", "in_list", "args", "in_tuple"])
def test_crafted_schedule_configs_run_code_under_instantiate_but_not_in_the_analysis(tmp_path, kind):
    marker = tmp_path / "marker.npy"
    config, key = crafted(marker)[kind]
    with contextlib.suppress(Exception):   # the payload runs first; the class may then refuse its result
        instantiate(config)
    assert marker.exists(), "the payload is live: a plain instantiate writes the marker"
    marker.unlink()

    run_dir = write_run(tmp_path / "runs" / "evil", config)
    with pytest.raises(ValueError, match=rf"run 'evil'.*{key}"):
        load(run_dir)
    for entry in (lambda: advise.shape_of(config), lambda: build_schedule(config),
                  lambda: build_schedule(dict(OmegaConf.create(config))),     # nested nodes of a DictConfig
                  lambda: groups.same_shape(config, WSD_CONFIG), lambda: extend.continuation_plan(config, 200),
                  lambda: extend.extension_options(config, 1e-3, 200)):
        with pytest.raises(ValueError, match=key):
            entry()
    write_run(tmp_path / "runs" / "good", WSD_CONFIG)
    with pytest.warns(UserWarning, match=r"skipped .*evil: not readable .*run 'evil'"):
        runs = load_many(str(tmp_path / "runs" / "*"))
    assert [r.name for r in runs] == ["good"]
    assert not marker.exists()


def test_python_m_analysis_refuses_the_crafted_run_and_skips_it_in_a_sweep(tmp_path, capsys):
    marker = tmp_path / "marker.npy"
    evil = write_run(tmp_path / "sweep" / "evil", {**WSD_CONFIG, "final_fraction": payload(marker)})
    with pytest.raises(SystemExit, match=r"advise extend: run 'evil'.*final_fraction\._(target|args)_"):
        cli.main(["advise", "extend", "--run", str(evil), "--steps", "400", "--lr", "1e-3", "--no-plot"])
    for lr in (0.01, 0.03, 0.1):     # a sweep beside it: final loss 2e-3 / lr + 2 lr + 3 (optimum 0.0316)
        write_run(tmp_path / "sweep" / f"{lr:g}", WSD_CONFIG, lr, 2e-3 / lr + 2 * lr + 3)
    cli.main(["advise", "sweep", "--runs", str(tmp_path / "sweep" / "*"), "--no-plot"])
    out = " ".join(capsys.readouterr().out.split())
    assert "skipped" in out and "run 'evil'" in out and "3/3" in out
    assert not marker.exists()


@pytest.mark.parametrize("target", ["os.system", "schedules.custom.os.system", "schedules.__builtins__",
                                    "schedules_x.WSD", "schedules", "schedules.base.np.ndarray",
                                    "schedules.WSD.__init__", 3])
def test_only_schedule_classes_are_built(target):
    with pytest.raises(ValueError, match=r"_target_=.*not a schedule class.*schedules\.WSD"):
        check_schedule_config({**WSD_CONFIG, "_target_": target})


@pytest.mark.parametrize("extra, key", [({"_partial_": True}, "_partial_"), ({"_recursive_": True}, "_recursive_"),
                                        ({"_convert_": "all"}, "_convert_"),
                                        ({"cooldown_kind": "${oc.env:HOME}"}, "cooldown_kind")])
def test_hydra_keys_and_interpolations_are_refused(extra, key):
    with pytest.raises(ValueError, match=key):
        build_schedule({**WSD_CONFIG, **extra})


def test_a_plain_schedule_config_builds_the_class_itself():
    built = build_schedule(OmegaConf.create(WSD_CONFIG))     # a DictConfig too
    np.testing.assert_array_equal(built.multipliers(), WSD(100, 10, cooldown_fraction=0.2).multipliers())
    points = {"_target_": "schedules.PiecewiseLinear", "total_steps": 10, "points": [[0, 1.0], [9, 0.0]],
              "x_units": "step"}
    assert build_schedule(points)(9) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"(?s)'odd'.*cannot be built.*cooldown_fraction"):
        build_schedule({**WSD_CONFIG, "cooldown_fraction": 2.0}, "run 'odd'")


def test_describe_does_not_import_a_crafted_module(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_mod.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass S:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert groups.describe({"_target_": "evil_mod.S", "total_steps": 10, "alpha": 2}) == "S(alpha=2)"
    assert not marker.exists()


# ---- token ids beyond the vocabulary ---------------------------------------------------------------
def test_the_header_records_the_largest_id(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 3000, size=5000).astype(np.uint16)
    shards.write_shard(tmp_path / "a.bin", tokens, vocab_size=4096)
    raw = (tmp_path / "a.bin").read_bytes()
    assert struct.unpack("<II", raw[8:12] + raw[24:28]) == (2, int(tokens.max()))
    assert shards.max_token_id(tmp_path / "a.bin", 4096, "") == int(tokens.max())
    shards.write_shard(tmp_path / "e.bin", np.zeros(0, np.uint16), vocab_size=10)
    assert shards.max_token_id(tmp_path / "e.bin", 10, "") == 0


def write_v1(path: Path, tokens, vocab_size: int) -> None:
    """A shard as format version 1 wrote it (bytes 24-32 zero)."""
    tokens = np.asarray(tokens, dtype="<u2")
    path.write_bytes(struct.pack("<8sIIQ8x", shards.MAGIC, 1, vocab_size, tokens.size) + tokens.tobytes())


def test_version_1_shards_stay_readable(tmp_path):
    write_v1(tmp_path / "old.bin", [5, 7, 100], vocab_size=50257)
    np.testing.assert_array_equal(shards.read_shard(tmp_path / "old.bin"), [5, 7, 100])
    assert shards.max_token_id(tmp_path / "old.bin", 50304, "") == 50256   # bounded by its tokenizer
    assert shards.max_token_id(tmp_path / "old.bin", 4096, "") == 100      # beyond the vocab: scanned
    write_v1(tmp_path / "big.bin", [5, 5000, 7], vocab_size=1 << 16)
    assert shards.max_token_id(tmp_path / "big.bin", 4096, "") == 5000


def prepared_dir(tmp_path: Path, foreign_id: int) -> Path:
    """A prepared directory of a 300-token tokenizer, one of whose train shards came from another one."""
    out = tmp_path / "prepared"
    out.mkdir()
    rng = np.random.default_rng(1)
    shards.write_shard(out / "train_00000.bin", rng.integers(0, 300, 2000), vocab_size=300)
    shards.write_shard(out / "train_00001.bin", np.r_[rng.integers(0, 300, 2000), foreign_id], vocab_size=1 << 16)
    shards.write_shard(out / "val_00000.bin", rng.integers(0, 300, 500), vocab_size=300)
    meta = {"tokenizer_vocab_size": 300, "train": ["train_00000.bin", "train_00001.bin"], "val": ["val_00000.bin"]}
    (out / shards.META_FILE).write_text(json.dumps(meta))
    return out


def test_a_shard_with_ids_beyond_the_vocabulary_is_refused_when_the_data_opens(tmp_path):
    out = prepared_dir(tmp_path, foreign_id=5000)
    with pytest.raises(ValueError) as error:
        shards.load(str(out), vocab_size=512, name="tiny")
    message = str(error.value)
    for part in (str(out / "train_00001.bin"), "token id 5000", "data.vocab_size=512", "python -m data.prepare"):
        assert part in message
    # the hazard it prevents: the same batch in a 512-row embedding is an IndexError at some step
    tokens = shards.read_shard(out / "train_00001.bin")
    with pytest.raises(IndexError):
        torch.nn.Embedding(512, 4)(torch.from_numpy(tokens.astype(np.int64)))


def test_a_foreign_shard_within_the_vocabulary_opens(tmp_path):
    data = shards.load(str(prepared_dir(tmp_path, foreign_id=511)), vocab_size=512, name="tiny")
    assert max(data.max_token_ids.values()) == 511
    x, _ = BatchLoader(data.train, batch_size=2, seq_len=16).next_batch()
    assert int(x.max()) < 512
    with pytest.raises(ValueError, match=r"train_00001\.bin holds token id 511.*model\.vocab_size=300"):
        data.check_vocab(300, "model.vocab_size")   # the trainer's check against its model
    TokenData(train=x, val=x, vocab_size=4, name="mem", tokenizer_path=None).check_vocab(4)   # no shards: none


def test_the_trainer_refuses_the_shard_before_building_a_model(tmp_path, tiny_cfg):
    cfg = tiny_cfg("data=slimpajama_6b", f"data.dir='{prepared_dir(tmp_path, foreign_id=60000)}'")
    with pytest.raises(ValueError, match=r"train_00001\.bin holds token id 60000.*data\.vocab_size=50304"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_tampered_embedded_cache_is_refused(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for i in range(6):
        (source / f"m{i}.py").write_text(f'"""Module {i}."""\n' + "def f(x):\n    return x + 1\n" * (20 + i))
    kwargs = dict(cache_dir=str(tmp_path / "cache"), vocab_size=300, val_fraction=0.4, source_dir=str(source))
    data = embedded.load(**kwargs)
    assert set(data.max_token_ids.values()) <= set(range(300))
    train_bin = Path(next(iter(data.max_token_ids)))
    shards.write_shard(train_bin, np.r_[np.asarray(data.train), 299 + 700], vocab_size=1 << 16)
    with pytest.raises(ValueError, match=r"train\.bin holds token id 999.*delete the cache"):
        embedded.load(**kwargs)

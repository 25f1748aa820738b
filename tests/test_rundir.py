"""training.rundir, the run-directory contract: it imports no torch / matplotlib / hydra, checkpoint
names round-trip, the metrics reader survives a torn last line, lineage keeps the JSON format that
train.py wrote before this module (existing run directories still load), and the analysis reads what
the writers write."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from training import rundir

ROOT = Path(__file__).resolve().parents[1]


def test_import_needs_no_torch_matplotlib_or_hydra():
    code = ("import sys, training.rundir; "
            "print([m for m in ('torch', 'matplotlib', 'hydra', 'pandas') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_checkpoint_names_round_trip(tmp_path):
    assert rundir.checkpoint_dir(tmp_path, 200) == tmp_path / "checkpoints" / "step_0000200"
    for step in (0, 7, 200, 1234567, 12345678):  # past 10^7 the name just grows
        assert rundir.checkpoint_step(rundir.checkpoint_dir(tmp_path, step)) == step
    for name in (".tmp-step_0000010-host-123", ".old-step_0000010-456", "step_", "step_1a", "step_10.bak",
                 "latest", "Step_0000010"):
        assert rundir.checkpoint_step(tmp_path / name) is None, name


def test_checkpoint_dirs_sorted_by_step_not_by_name(tmp_path):
    assert rundir.checkpoint_dirs(tmp_path) == []  # no checkpoints/ yet
    root = tmp_path / "checkpoints"
    for name in ("step_10", "step_9", "step_0000100", ".tmp-step_0000200-h-1", "notes"):
        (root / name).mkdir(parents=True)
    (root / "step_0000300").write_text("a file, not a checkpoint")
    assert [p.name for p in rundir.checkpoint_dirs(tmp_path)] == ["step_9", "step_10", "step_0000100"]


def test_read_metrics_skips_a_torn_line_and_rewind_drops_it(tmp_path):
    events = [{"step": 0, "val/loss": 9.0}, {"step": 5, "train/loss": 4.0}, {"step": 10, "train/loss": 3.0}]
    text = "".join(json.dumps(e) + "\n" for e in events)
    (tmp_path / "metrics.jsonl").write_text(text + "\n" + '{"step": 15, "train/lo')  # killed mid-write
    with pytest.warns(UserWarning, match=r"metrics.jsonl:5: not JSON"):
        assert rundir.read_metrics(tmp_path) == events
    with pytest.warns(UserWarning):
        rundir.rewind(tmp_path, 5)
    assert (tmp_path / "metrics.jsonl").read_text() == "".join(json.dumps(e) + "\n" for e in events[:2])
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temporary file left
    rundir.rewind(tmp_path / "elsewhere", 5)  # nothing logged yet: nothing to do


def test_lineage_keeps_the_format_train_py_wrote(tmp_path):
    parent_ckpt = tmp_path / "parent" / "checkpoints" / "step_0000080"
    parent_ckpt.mkdir(parents=True)
    child = tmp_path / "child"
    child.mkdir()
    assert rundir.read_lineage(child) is None
    rundir.write_lineage(child, parent_ckpt, 80)
    # The JSON train.py wrote before this module existed, key for key and byte for byte.
    old_format = {"parent_run": str(parent_ckpt.resolve().parent.parent), "branch_step": 80,
                  "parent_checkpoint": str(parent_ckpt.resolve())}
    assert (child / "lineage.json").read_text() == json.dumps(old_format, indent=2) + "\n"
    assert rundir.read_lineage(child) == old_format
    rundir.clear_lineage(child)
    assert rundir.read_lineage(child) is None and not (child / "lineage.json").exists()
    rundir.clear_lineage(child)  # clearing twice is fine


def test_lineage_of_a_relative_checkpoint_path_is_absolute(tmp_path, monkeypatch):
    (tmp_path / "runs" / "parent" / "checkpoints" / "step_0000040").mkdir(parents=True)
    (tmp_path / "child").mkdir()
    monkeypatch.chdir(tmp_path / "runs")
    rundir.write_lineage(tmp_path / "child", "parent/checkpoints/step_0000040", 40)
    lineage = rundir.read_lineage(tmp_path / "child")
    assert lineage["parent_run"] == str((tmp_path / "runs" / "parent").resolve())
    assert Path(lineage["parent_checkpoint"]).is_absolute()


def test_older_and_broken_lineage_files(tmp_path):
    (tmp_path / "lineage.json").write_text(json.dumps({"parent_run": "../parent", "branch_step": "240"}))
    assert rundir.read_lineage(tmp_path) == {"parent_run": "../parent", "branch_step": 240}
    for text in ('{"parent_run": "p"}', "not json", '["a list"]'):
        (tmp_path / "lineage.json").write_text(text)
        with pytest.raises(ValueError, match=r"lineage.json is not a lineage record.*parent_run.*branch_step"):
            rundir.read_lineage(tmp_path)


def test_the_analysis_reads_what_the_writers_write(tmp_path):
    """A parent and a branch written through rundir are stitched by analysis.runs.load."""
    from analysis.runs import load

    schedule = {"_target_": "schedules.Constant", "total_steps": 40, "warmup_steps": 0}
    for name, steps, loss in (("parent", range(10, 41, 10), 4.0), ("child", (30, 40), 3.0)):
        run = tmp_path / name
        run.mkdir()
        OmegaConf.save(OmegaConf.create({"schedule": schedule, "optimizer": {"lr": 1e-3}}), run / rundir.CONFIG_FILE)
        (run / rundir.METRICS_FILE).write_text("".join(json.dumps({"step": s, "train/loss": loss}) + "\n"
                                                      for s in steps))
    rundir.checkpoint_dir(tmp_path / "parent", 20).mkdir(parents=True)
    rundir.write_lineage(tmp_path / "child", rundir.checkpoint_dirs(tmp_path / "parent")[0], 20)
    run = load(tmp_path / "child")
    assert run.branch_step == 20 and run.parent.name == "parent"
    assert run.metrics.set_index("step")["train/loss"].to_dict() == {10: 4.0, 20: 4.0, 30: 3.0, 40: 3.0}


def test_wandb_id_file(tmp_path):
    assert rundir.read_wandb_id(tmp_path) is None
    rundir.write_wandb_id(tmp_path, "abc123")
    assert rundir.read_wandb_id(tmp_path) == "abc123"
    (tmp_path / rundir.WANDB_ID_FILE).write_text("\n")  # an empty file is no id
    assert rundir.read_wandb_id(tmp_path) is None

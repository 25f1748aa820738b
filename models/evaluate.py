"""Evaluate a checkpoint: lm-evaluation-harness tasks, or the loss and perplexity of a validation split.

    python -m models.evaluate outputs/<run>/checkpoints/step_0000400 --tasks hellaswag,arc_easy --limit 200
    python -m models.evaluate HF_DIR --tasks lambada_openai --batch-size 16 --device cuda --output results.json
    python -m models.evaluate CKPT --tasks tiny_choice,tiny_continuation --include-path tests/data/eval_task
    python -m models.evaluate CKPT --perplexity                    # the run's own validation split
    python -m models.evaluate CKPT --perplexity --data slimpajama_6b          # a data config (configs/data/)
    python -m models.evaluate HF_DIR --perplexity --data RUN_DIR              # the data a run trained on
    python -m models.evaluate HF_DIR --perplexity --data DIR --seq-len 512    # a folder with val shards

PATH is a checkpoint directory, a run directory (its newest checkpoint) or a Hugging Face
LlamaForCausalLM folder. Tasks: a checkpoint is first exported (models.export, with the run's
tokenizer) to a temporary folder, which lm-eval loads as `model="hf"`; lm-eval finds the tasks in its
own task index plus --include-path (a folder of task YAMLs); only an index of --include-path is built
when it holds every task asked for (1 s instead of 6 s). Built-in tasks download their data sets
from the Hugging Face hub on first use; tests/data/eval_task holds two offline tasks. lm-eval's
context window is the model's max_seq_len (max_position_embeddings): it cuts longer contexts from
the left. The table is lm-eval's; --output writes its results (per-task metrics, versions, n-shot,
configs) as JSON, without the per-document samples.

--perplexity: the mean next-token loss over every window of the validation split, computed as the
trainer computes `final/val_loss` (training/loop.py `evaluate` over data/loader.py `eval_batches`:
non-overlapping windows of seq_len + 1 tokens, batches of eval_batch_size, weighted by sequences),
and perplexity = exp(loss). seq_len, batch size and precision default to the run's trainer
settings; a Hugging Face folder, which records none, is run through transformers' own forward with
seq_len = its max_position_embeddings unless --seq-len says otherwise. On CUDA the run's precision
(bf16 autocast by default) applies, and the trainer's value was also taken with torch.compile: there
the two agree to bf16 precision, on CPU (fp32) to float rounding. Tested by tests/test_evaluate.py.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import tempfile
from pathlib import Path

import torch

import models

OFFLINE_TASKS = "tests/data/eval_task"  # the repository's offline example tasks (for error messages)


def run_config(path: str | Path):
    """The config.yaml recorded with a checkpoint (a run directory: its newest), or None for a Hugging
    Face folder or a directory that records none."""
    from omegaconf import OmegaConf

    path = Path(path)
    if models.is_hf_folder(path) or not path.exists():
        return None
    config_file = models.checkpoint_dir_of(path) / "config.yaml"
    return OmegaConf.load(config_file) if config_file.is_file() else None


# ---------------------------------------------------------------------------------------------------
# lm-evaluation-harness
# ---------------------------------------------------------------------------------------------------
def task_manager(tasks: list[str], include_path: str | Path | None = None):
    """An lm-eval TaskManager that knows every name in `tasks`, else a ValueError naming the unknown
    ones, the closest known names and how to add a folder of task YAMLs."""
    from lm_eval.tasks import TaskManager

    if not tasks:
        raise ValueError("no task given: pass --tasks NAME[,NAME...] (e.g. --tasks hellaswag), or --perplexity")
    if include_path is not None:
        if not Path(include_path).is_dir():
            raise ValueError(f"--include-path {include_path} is not a directory: give a folder of lm-eval task "
                             f"YAML files (e.g. {OFFLINE_TASKS})")
        local = TaskManager(include_path=str(include_path), include_defaults=False)
        if all(name in local.all_tasks for name in tasks):
            return local  # indexing lm-eval's thousands of built-in YAMLs takes seconds: skip it
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [name for name in tasks if name not in manager.all_tasks]
    if unknown:
        hints = "; ".join(f"{name}: did you mean {', '.join(close)}?" if close else f"{name}: no close name"
                          for name in unknown for close in [difflib.get_close_matches(name, manager.all_tasks, 3)])
        raise ValueError(f"unknown lm-eval task(s) {', '.join(unknown)} ({hints}). `lm-eval ls tasks` lists the "
                         f"{len(manager.all_tasks)} known ones; a task of your own: --include-path DIR (a folder of "
                         f"task YAMLs, e.g. --include-path {OFFLINE_TASKS} for tiny_choice and tiny_continuation)")
    return manager


def hf_model_dir(path: str | Path, workdir: str | Path) -> Path:
    """`path` itself when it is a Hugging Face folder, else its export (with the run's tokenizer) in workdir."""
    from models.export import export

    path = models.existing(path)
    return path if models.is_hf_folder(path) else export(path, Path(workdir) / "hf")


def run_tasks(path: str | Path, tasks: list[str], include_path: str | Path | None = None, limit: float | None = None,
              batch_size: int | str = 1, device: str = "cpu", dtype: str = "float32", num_fewshot: int | None = None,
              log_samples: bool = False) -> dict:
    """lm_eval.simple_evaluate's results dict for `tasks` on the model at `path` (samples when log_samples)."""
    import lm_eval

    manager = task_manager(tasks, include_path)  # before the export: a misspelled task costs no model load
    with tempfile.TemporaryDirectory(prefix="lrsched-eval-") as workdir:
        model_dir = hf_model_dir(path, workdir)
        return lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": str(model_dir), "dtype": dtype}, tasks=list(tasks),
            num_fewshot=num_fewshot, batch_size=batch_size, device=device, limit=limit, task_manager=manager,
            log_samples=log_samples)


def results_json(results: dict) -> str:
    """The results as JSON, without the per-document samples (large; `run_tasks(log_samples=True)` has them)."""
    from lm_eval.utils import handle_non_serializable

    keep = {k: v for k, v in results.items() if k != "samples"}
    return json.dumps(keep, indent=2, default=handle_non_serializable, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------------
# Perplexity of a token validation split
# ---------------------------------------------------------------------------------------------------
class CausalLMLoss(torch.nn.Module):
    """A transformers causal LM behind our model's loss interface: forward(x, y) -> the mean
    cross-entropy of the logits at every position of x against y (y[:, t] is the token after x[:, t])."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=x).logits  # no labels: transformers would shift them by itself
        return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())


def _shard_dir_val(directory: Path):
    """The validation tokens of a prepared data directory (meta.json's val shards) or of a folder with
    val.bin (e.g. an embedded-corpus cache)."""
    from data import shards
    from training.config import group_options

    remedy = (f"prepare the data with `python -m data.prepare data=NAME data.dir={directory}` (NAME one of "
              f"{', '.join(group_options('data'))}), or pass --data NAME")
    meta = directory / shards.META_FILE
    if meta.is_file() and json.loads(meta.read_text()).get("val"):
        return shards.read_tokens([directory / f for f in json.loads(meta.read_text())["val"]], remedy)
    if (directory / "val.bin").is_file():
        return shards.read_shard(directory / "val.bin", remedy)
    raise ValueError(f"{directory} holds no validation split (no {shards.META_FILE} listing val shards, no val.bin): "
                     f"{remedy}")


def validation_tokens(data: str | None, cfg) -> tuple[object, str, object]:
    """(validation tokens, a description, the run config that goes with them or None) for --data:
    None (the checkpoint's run data), a run or checkpoint directory, a data directory or a data config name."""
    from training.config import compose, group_options
    from training.setup import build

    if data is None:
        if cfg is None:
            raise ValueError("a Hugging Face folder does not record its data: pass --data (the run directory it "
                             "was exported from, a data config name such as embedded, or a directory with val shards)")
        return build(cfg.data, "data").val, f"the run's data ({cfg.data.name})", cfg
    path = Path(data).expanduser()
    if path.is_dir():
        data_cfg = run_config(path)
        if data_cfg is not None:
            return build(data_cfg.data, "data").val, f"the data of run {path} ({data_cfg.data.name})", data_cfg
        return _shard_dir_val(path), str(path), None
    if data not in group_options("data"):
        raise ValueError(f"--data {data} is neither a directory nor a data config: use one of "
                         f"{', '.join(group_options('data'))}, a run directory or a directory with val shards")
    return build(compose([f"data={data}"]).data, "data").val, f"data config {data}", None


@torch.no_grad()
def perplexity(path: str | Path, data: str | None = None, seq_len: int | None = None, batch_size: int | None = None,
               device: str = "cpu", precision: str | None = None) -> dict:
    """{"val_loss", "perplexity", "tokens", "windows", "seq_len", "batch_size", "data"} of the model at
    `path` on a validation split, as the trainer's final evaluation computes `final/val_loss`."""
    from data.loader import eval_batches, num_windows
    from training.loop import evaluate
    from training.parallelize import Prepared, autocast_context

    path = models.existing(path)
    cfg = run_config(path)
    tokens, source, data_cfg = validation_tokens(data, cfg)  # before the model: a data error costs no load
    if models.is_hf_folder(path):  # through transformers' forward: an independent model call
        from transformers import LlamaForCausalLM

        hf = LlamaForCausalLM.from_pretrained(path, local_files_only=True).float().eval()
        model, vocab, max_len = CausalLMLoss(hf), hf.config.vocab_size, hf.config.max_position_embeddings
    else:
        model = models.load(path, None)  # names a missing path or a bad checkpoint
        vocab, max_len = model.config.vocab_size, model.config.max_seq_len
    run = data_cfg or cfg  # the trainer settings that go with the data
    seq_len = seq_len or (run.trainer.seq_len if run is not None else max_len)
    batch_size = batch_size or (run.trainer.eval_batch_size if run is not None else 32)
    precision = precision or (run.trainer.precision if run is not None else "auto")
    if seq_len > max_len:
        raise ValueError(f"--seq-len {seq_len} exceeds the model's maximum sequence length {max_len}: lower it")
    if len(tokens) and int(max(part.max() for part in _parts(tokens))) >= vocab:
        raise ValueError(f"{source} holds token ids beyond the model's {vocab} embedding rows: pass the data "
                         f"the model was trained on (its tokenizer)")
    models.check_device(device)
    device_ = torch.device(device)
    model = model.to(device_).eval()
    # our model: the fused kernels the trainer resolves for this device (parallelize does the same)
    kernels = model.set_kernels(device_.type) if hasattr(model, "set_kernels") else "transformers"
    prepared = Prepared(model=model, raw=model, autocast=autocast_context(device_, precision), parallel="none",
                        kernels=kernels, compiled=False)
    windows = num_windows(tokens, seq_len)
    loss = evaluate(prepared, eval_batches(tokens, batch_size, seq_len, None), device_)
    return {"val_loss": loss, "perplexity": math.exp(loss), "tokens": windows * seq_len, "windows": windows,
            "seq_len": seq_len, "batch_size": batch_size, "data": source}


def _parts(tokens):
    from data.tokens import token_parts

    return [part for part in token_parts(tokens) if len(part)]


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """The command line (its return value is the exit status)."""
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.split("\n\n")[0],
                                     epilog="Examples:\n" + __doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="a checkpoint directory, a run directory or a Hugging Face model folder")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--tasks", help="comma-separated lm-eval task names (e.g. hellaswag,arc_easy)")
    what.add_argument("--perplexity", action="store_true", help="loss and perplexity on a validation split")
    parser.add_argument("--include-path", help="a folder of lm-eval task YAMLs (e.g. tests/data/eval_task)")
    parser.add_argument("--limit", type=float, help="documents per task (a fraction if < 1); for quick checks")
    parser.add_argument("--num-fewshot", type=int, help="few-shot examples per prompt (default: the task's)")
    parser.add_argument("--batch-size", help="lm-eval: an integer or auto (default 1); --perplexity: sequences "
                        "per batch (default: the run's trainer.eval_batch_size)")
    parser.add_argument("--dtype", default="float32", help="lm-eval: float32 (default), bfloat16 or float16")
    parser.add_argument("--data", help="--perplexity: a data config name, a run directory or a directory with "
                        "val shards (default: the checkpoint's run data)")
    parser.add_argument("--seq-len", type=int, help="--perplexity: tokens per window (default: the run's)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--output", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    try:
        models.check_device(args.device)
        misplaced = [flag for flag, value, used in (
            ("--data", args.data, args.perplexity), ("--seq-len", args.seq_len, args.perplexity),
            ("--include-path", args.include_path, not args.perplexity), ("--limit", args.limit, not args.perplexity),
            ("--num-fewshot", args.num_fewshot, not args.perplexity)) if value is not None and not used]
        if misplaced:
            raise ValueError(f"{', '.join(misplaced)} {'go' if len(misplaced) > 1 else 'goes'} with "
                             f"{'--tasks' if args.perplexity else '--perplexity'}: drop it or switch mode")
        if args.perplexity:
            batch = args.batch_size
            bad_batch = batch is not None and not (batch.isdigit() and int(batch) >= 1)
            if bad_batch or (args.seq_len is not None and args.seq_len < 1):
                raise ValueError("--perplexity takes a positive integer --batch-size and --seq-len")
            batch = int(batch) if batch else None
            result = perplexity(args.path, args.data, args.seq_len, batch, args.device)
            print(f"val loss {result['val_loss']:.6f}  perplexity {result['perplexity']:.4f}  ({result['windows']} "
                  f"windows of {result['seq_len']} tokens, {result['data']})")
            text = json.dumps(result, indent=2) + "\n"
        else:
            batch = args.batch_size or 1
            if batch != "auto" and not (str(batch).isdigit() and int(batch) >= 1):
                raise ValueError(f"--batch-size {batch}: give a positive integer or auto")
            tasks = [name.strip() for name in args.tasks.split(",") if name.strip()]
            results = run_tasks(args.path, tasks, args.include_path, args.limit,
                                batch if batch == "auto" else int(batch), args.device, args.dtype, args.num_fewshot)
            from lm_eval.utils import make_table

            print(make_table(results))
            text = results_json(results)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))  # one message and exit status 2, no traceback
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

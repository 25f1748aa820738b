"""Export a checkpoint of this trainer as a Hugging Face `LlamaForCausalLM` folder.

    python -m models.export outputs/run/checkpoints/step_0000400 hf_out   # or a run dir: its newest checkpoint
    python -m models.export CHECKPOINT OUT_DIR --tokenizer path/to/tokenizer.json --eos-token "<|endoftext|>"

OUT_DIR then holds config.json, model.safetensors, generation_config.json and the tokenizer files
(tokenizer.json, tokenizer_config.json), and loads offline:

    from transformers import AutoTokenizer, LlamaForCausalLM
    model = LlamaForCausalLM.from_pretrained("hf_out"); tokenizer = AutoTokenizer.from_pretrained("hf_out")

The tokenizer is the run's own: the tokenizer.json next to its data (the embedded corpus' BPE in its
cache, or the one data.prepare saved beside the shards, GPT-2's for the paper data), found through
the data config recorded in the checkpoint; --tokenizer overrides it (e.g. the data is on another
machine). Padded vocabulary rows and the tied head: models/hf.py. Back into training:
`python train.py trainer.init_from=hf:OUT_DIR`. Tested by tests/test_hf_interop.py.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from omegaconf import OmegaConf

import models
from models.hf import EOS_TOKEN, save_pretrained

log = logging.getLogger(__name__)


def run_tokenizer(checkpoint: str | Path) -> str:
    """The tokenizer.json of the data the checkpoint's run trained on (its recorded data config)."""
    from training.setup import build  # registers the configs' resolvers

    config_file = models.checkpoint_dir_of(checkpoint) / "config.yaml"
    remedy = "pass the run's tokenizer.json with --tokenizer"
    if not config_file.is_file():
        raise ValueError(f"{config_file} is missing, so the run's tokenizer is unknown: {remedy}.")
    try:
        data = build(OmegaConf.load(config_file).data, "data")
    except (ValueError, FileNotFoundError, OSError) as err:
        raise ValueError(f"the run's data could not be opened to find its tokenizer ({err}): {remedy}.") from err
    if not data.tokenizer_path:
        raise ValueError(f"the run's data ({data.name}) has no tokenizer.json: {remedy}.")
    return data.tokenizer_path


def export(checkpoint: str | Path, out_dir: str | Path, tokenizer: str | Path | None = None,
           eos_token: str = EOS_TOKEN) -> Path:
    """Write `checkpoint` (a checkpoint or run directory) as a Hugging Face folder `out_dir`."""
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "config.json").is_file():
        raise ValueError(f"{out_dir} exists and is not an exported model folder: pick a new OUT_DIR "
                         f"(an earlier export there is overwritten).")
    if tokenizer is not None and not Path(tokenizer).is_file():
        raise FileNotFoundError(f"--tokenizer {tokenizer} is not a file: give a tokenizer.json.")
    model = models.load(checkpoint)
    tokenizer = tokenizer or run_tokenizer(checkpoint)
    save_pretrained(model, out_dir, tokenizer, eos_token)
    log.info("Exported %s (%s parameters) with tokenizer %s to %s", checkpoint, f"{model.num_params():,}",
             tokenizer, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """The command line (also a console entry point: its return value is the exit status)."""
    parser = argparse.ArgumentParser(prog="python -m models.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint directory (<run>/checkpoints/step_N) or a run directory")
    parser.add_argument("out_dir", help="the Hugging Face folder to write")
    parser.add_argument("--tokenizer", help="a tokenizer.json (default: the run's, from its data config)")
    parser.add_argument("--eos-token", default=EOS_TOKEN, help=f"end-of-text token (default {EOS_TOKEN})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        export(args.checkpoint, args.out_dir, args.tokenizer, args.eos_token)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

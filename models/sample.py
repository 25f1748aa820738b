"""Sample text from a checkpoint: temperature, top-k and top-p (nucleus) sampling, with a KV cache.

    python -m models.sample outputs/<run>/checkpoints/step_0000400 --prompt "def main():"
    python -m models.sample CKPT --prompt "import os" --max-new-tokens 64 --temperature 0.8 --top-k 50 \\
        --top-p 0.95 --seed 1
    python -m models.sample CKPT --prompt "Hello" --temperature 0           # greedy
    python -m models.sample CKPT --prompt "Hello" --tokenizer HF_DIR         # a Hugging Face tokenizer
    python -m models.sample HF_OUT --prompt "Hello"      # a folder written by python -m models.export

CKPT is what `models.load` reads: a checkpoint directory, a run directory (its newest checkpoint)
or an exported Hugging Face folder. The tokenizer is the run's (the tokenizer.json of its recorded
data config, found by models.export.run_tokenizer: the embedded corpus' BPE, or the one a prepared
GPT-2 dataset keeps beside its shards) or an exported folder's own, unless --tokenizer names a
tokenizer.json file, a local Hugging Face tokenizer folder (e.g. the files of `gpt2`, offline) or a
hub name.
Generation stops at the tokenizer's end-of-text token, after --max-new-tokens, or at the model's
max_seq_len (prompt + new tokens must fit in it: positions beyond it have no RoPE angles).

Each step turns the last position's logits into a token: temperature 0 is greedy (argmax);
otherwise logits / temperature, then top-k (keep the k largest logits, ties at the k-th included),
then top-p (keep the smallest set of most probable tokens whose probability sums to >= p; the
order of transformers' generate), then one draw from the renormalized softmax with a
torch.Generator seeded by --seed. With the cache (default) the prompt is run once and each new
token costs one position; --no-cache reruns the whole sequence per token (the reference the
tests compare against). Tested by tests/test_sample.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import models

EOS_TOKEN = "<|endoftext|>"  # the end-of-text token of the embedded BPE (id 0) and of GPT-2 (50256)


def check_sampling(temperature: float, top_k: int | None = None, top_p: float | None = None,
                   max_new_tokens: int = 1) -> None:
    """ValueError naming the argument and the fix for settings that have no meaning."""
    if not temperature >= 0:  # also catches NaN
        raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy decoding, 1 = the model's "
                         f"own distribution)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k={top_k} must be >= 1 (or left out to keep every token)")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p} must be in (0, 1] (e.g. 0.9; 1 keeps every token)")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """logits [..., V] with the tokens outside the top-k / top-p set at -inf (a copy)."""
    logits = logits.clone()
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = float("-inf")
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the more probable ones before it already reach top_p (so the token
        # that crosses top_p is kept, and the most probable token always is)
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits[drop] = float("-inf")
    return logits


def next_token(logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of logits [B, V] -> [B] (greedy when temperature is 0)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model, prompt: list[int], max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None, use_cache: bool = True,
             stop_token: int | None = None, vocab_size: int | None = None) -> list[int]:
    """The new token ids after `prompt` (stop_token, when drawn, is the last one). vocab_size: the
    tokenizer's; ids at or above it (the padded embedding rows, e.g. GPT-2's 50257..50303 of 50304) are
    never drawn, as the exported generation_config's suppress_tokens says for transformers."""
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    if not prompt:
        raise ValueError("the prompt encodes to no tokens: give a non-empty --prompt")
    room = model.config.max_seq_len - len(prompt)
    if room < 0:
        raise ValueError(f"the prompt has {len(prompt)} tokens, more than the model's max_seq_len="
                         f"{model.config.max_seq_len}: shorten it")
    if max_new_tokens > room:
        raise ValueError(f"prompt ({len(prompt)} tokens) + max_new_tokens={max_new_tokens} exceeds the model's "
                         f"max_seq_len={model.config.max_seq_len}: use --max-new-tokens {max(room, 0)} or less, "
                         f"or a shorter prompt")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()  # a fresh nondeterministic seed
    else:
        generator.manual_seed(seed)
    model.eval()
    tokens = torch.tensor([prompt], dtype=torch.long, device=device)
    cache = model.new_cache() if use_cache else None
    new_input = tokens  # the positions the model has not seen yet
    out: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(new_input if use_cache else tokens, cache=cache)[:, -1]
        if vocab_size is not None and vocab_size < logits.shape[-1]:
            logits[:, vocab_size:] = float("-inf")
        token = next_token(logits, temperature, top_k, top_p, generator)  # [1]
        out.append(int(token))
        if stop_token is not None and out[-1] == stop_token:
            break
        new_input = token[:, None]
        tokens = torch.cat([tokens, new_input], dim=1)
    return out


# ---------------------------------------------------------------------------------------------------
# Checkpoint and tokenizer
# ---------------------------------------------------------------------------------------------------
def load_tokenizer(spec: str | None, source: str | Path | None = None):
    """A transformers tokenizer: from `spec` (a tokenizer.json, a local Hugging Face folder or a hub
    name), else the one that goes with `source`: an exported Hugging Face folder's own tokenizer
    files, or the tokenizer.json of the data a checkpoint's run trained on (models.export finds it)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from models.export import run_tokenizer

    if spec is None:
        if source is None:
            raise ValueError("no tokenizer: pass --tokenizer (a tokenizer.json or a Hugging Face folder)")
        spec = str(source) if models.is_hf_folder(source) else run_tokenizer(source)
    spec = str(spec)
    if spec.endswith(".json") and Path(spec).is_file():
        return PreTrainedTokenizerFast(tokenizer_file=spec)
    try:
        return AutoTokenizer.from_pretrained(spec)
    except OSError as err:
        raise ValueError(f"--tokenizer {spec}: not a tokenizer.json, a folder of Hugging Face tokenizer "
                         f"files, or a hub name that is cached or reachable ({str(err).splitlines()[0]})") from err


def stop_token_id(tokenizer) -> int | None:
    """The end-of-text id: the tokenizer's eos token, else <|endoftext|> if it has one."""
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    return tokenizer.get_vocab().get(EOS_TOKEN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.sample", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint directory (outputs/<run>/checkpoints/step_N), a run "
                        "directory (its newest checkpoint) or an exported Hugging Face folder")
    parser.add_argument("--prompt", required=True, help="the text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1)")
    parser.add_argument("--top-k", type=int, default=None, help="keep the k most probable tokens")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus: keep tokens up to this probability mass")
    parser.add_argument("--seed", type=int, default=None, help="seed of the sampling generator (reproducible draws)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer.json, Hugging Face tokenizer folder or hub name (default: the run's data)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--no-cache", action="store_true", help="recompute the whole sequence per token")
    args = parser.parse_args(argv)
    try:
        check_sampling(args.temperature, args.top_k, args.top_p, args.max_new_tokens)
        models.check_device(args.device)
        model = models.load(args.checkpoint, args.device)
        tokenizer = load_tokenizer(args.tokenizer, args.checkpoint)
        prompt = tokenizer.encode(args.prompt, add_special_tokens=False)
        if max(prompt, default=0) >= model.config.vocab_size:
            raise ValueError(f"the tokenizer gives ids up to {max(prompt)} but the model has "
                             f"{model.config.vocab_size} embedding rows: pass the tokenizer the run trained with")
        new = generate(model, prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed,
                       use_cache=not args.no_cache, stop_token=stop_token_id(tokenizer), vocab_size=len(tokenizer))
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))  # one line and exit status 2, no traceback
    if new and new[-1] == stop_token_id(tokenizer):
        new = new[:-1]  # the end-of-text mark ends the text; it is not printed
    print(tokenizer.decode(prompt + new, clean_up_tokenization_spaces=False))  # the text as the tokens spell it
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

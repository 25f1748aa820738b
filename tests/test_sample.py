"""Tests of the KV cache (models/llama.py) and of sampling (models/sample.py).

    python -m pytest -q tests/test_sample.py -p no:cacheprovider

References: the model's own full forward (no cache) for the cached logits and greedy tokens; filtered
distributions worked out by hand on fixed probabilities for temperature / top-k / top-p; the
`tokenizers` library directly for what the CLI prints. The tiny models use rope_theta=10 so that
the sequences run past the period of every RoPE frequency (the longest is 2 pi 10^(7/8) ~ 47 positions
at head_dim 16), and init_std=0.5 so that greedy decoding does not repeat one token.
Float32 tolerance of cached vs full logits: 1e-5 of the largest logit, ~100 float32 ulps at that scale:
the same sums in another order (SDPA with an explicit mask over the cached keys vs its causal path);
measured 1.5e-5 absolute (1.1e-6 relative to the largest logit) on the model here.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from conftest import TINY, compose_config, save_weights
from hydra.utils import instantiate
from models.export import export
from models.llama import Llama
from models.sample import check_sampling, filter_logits, generate, main, next_token

VOCAB, MAX_LEN = 97, 64


def tiny_model(seed: int) -> Llama:
    torch.manual_seed(seed)
    return Llama(vocab_size=VOCAB, n_layer=2, n_head=2, d_model=32, max_seq_len=MAX_LEN, kernels="torch",
                 rope_theta=10.0, init_std=0.5).eval()


@torch.no_grad()
def test_cached_logits_equal_the_full_forward_at_every_position():
    model = tiny_model(0)
    tokens = torch.randint(0, VOCAB, (2, 60), generator=torch.Generator().manual_seed(1))
    full = model(tokens)
    cache = model.new_cache()
    # a prompt, single tokens, then a chunk: every path of the shifted causal mask
    pieces, start = [], 0
    for size in [7, 1, 1, 1, 5, 1, 20, 1, 23]:
        pieces.append(model(tokens[:, start:start + size], cache=cache))
        start += size
        assert cache.length == start
    scale = float(full.abs().max())  # ~13: logits of std-0.5 weights
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5 * scale)
    with pytest.raises(ValueError, match="exceeds max_seq_len=64"):
        model(tokens[:, :5], cache=cache)  # 60 cached + 5 > 64


@torch.no_grad()
def test_cache_with_triton_kernels_and_batch_check():
    """The Triton RoPE kernel reads the angles of the cached positions' offset too (on CPU under the
    Triton interpreter, which tests/conftest.py turns on); a cache is tied to its batch size."""
    torch.manual_seed(0)
    model = Llama(vocab_size=VOCAB, n_layer=1, n_head=2, d_model=32, max_seq_len=16, kernels="triton",
                  rope_theta=10.0, init_std=0.5).eval()
    tokens = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(2))
    full = model(tokens)
    assert model.ops.impl == "triton"
    cache = model.new_cache()
    pieces = [model(tokens[:, a:b], cache=cache) for a, b in [(0, 9), (9, 10), (10, 12)]]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5 * float(full.abs().max()))
    with pytest.raises(ValueError, match="holds a batch of 1 sequences, the tokens are a batch of 2"):
        model(tokens[:, :1].repeat(2, 1), cache=cache)


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_with_cache_equals_greedy_without_it(seed):
    model = tiny_model(seed)
    for prompt in ([5], [3, 1, 4, 1, 5], list(range(10, 27))):
        new = MAX_LEN - len(prompt)
        cached = generate(model, prompt, new, temperature=0)
        uncached = generate(model, prompt, new, temperature=0, use_cache=False)
        assert cached == uncached
        assert len(cached) == new and len(set(cached)) > 5  # a real sequence, not one token repeated


def test_generation_stops_after_the_stop_token():
    model = tiny_model(1)
    free = generate(model, [2, 7], 40, temperature=0)
    stop = free[5]
    first = free.index(stop)  # the stop token's first appearance, 5 or earlier
    assert generate(model, [2, 7], 40, temperature=0, stop_token=stop) == free[:first + 1]


def test_filtered_distributions_match_hand_computation():
    p = np.array([0.15, 0.5, 0.05, 0.2, 0.1])  # ranks: 1 (0.5), 3 (0.2), 0 (0.15), 4 (0.1), 2 (0.05)
    logits = torch.tensor(np.log(p) + 3.0)  # a shift changes no softmax

    def dist(**kw):
        return filter_logits(logits, **kw).softmax(-1).numpy()

    np.testing.assert_allclose(dist(), p, atol=1e-12)
    np.testing.assert_allclose(dist(top_k=2), [0, 5 / 7, 0, 2 / 7, 0], atol=1e-12)
    # top-p 0.8: 0.5 + 0.2 = 0.7 falls short, + 0.15 = 0.85 reaches it -> three tokens
    np.testing.assert_allclose(dist(top_p=0.8), [0.15 / 0.85, 0.5 / 0.85, 0, 0.2 / 0.85, 0], atol=1e-12)
    np.testing.assert_allclose(dist(top_p=0.3), [0, 1, 0, 0, 0], atol=1e-12)  # the top token alone
    np.testing.assert_allclose(dist(top_p=1.0), p, atol=1e-12)
    # top-k first, then top-p on the renormalized rest: [0.5, 0.2, 0.15] / 0.85 -> 0.588 < 0.6 -> two
    np.testing.assert_allclose(dist(top_k=3, top_p=0.6), [0, 5 / 7, 0, 2 / 7, 0], atol=1e-12)
    # ties at the k-th logit are kept
    tied = filter_logits(torch.tensor([1.0, 2.0, 1.0, 0.0]), top_k=2)
    assert torch.isinf(tied).tolist() == [False, False, False, True]


def test_sampled_frequencies_follow_the_filtered_distribution():
    p = np.array([0.15, 0.5, 0.05, 0.2, 0.1])
    logits = torch.tensor(np.log(p)).repeat(200_000, 1)
    g = torch.Generator().manual_seed(0)
    # temperature 2 flattens to p^(1/2) / sum; top-k 3 then keeps 1, 3, 0
    draws = next_token(logits, temperature=2.0, top_k=3, generator=g)
    expected = np.sqrt(p) * np.array([1, 1, 0, 1, 0])
    expected /= expected.sum()
    freq = np.bincount(draws.numpy(), minlength=5) / len(draws)
    # 5 standard errors of a frequency near 0.4 at n = 2e5 is ~0.0055
    np.testing.assert_allclose(freq, expected, atol=0.0055)
    assert freq[2] == freq[4] == 0
    assert next_token(logits[:3], temperature=0).tolist() == [1, 1, 1]  # greedy


def test_seed_reproduces_samples_and_another_seed_differs():
    model = tiny_model(0)
    kw = dict(temperature=1.0, top_k=40, top_p=0.95)
    first = generate(model, [1, 2, 3], 30, seed=7, **kw)
    assert generate(model, [1, 2, 3], 30, seed=7, **kw) == first
    assert generate(model, [1, 2, 3], 30, seed=8, **kw) != first


@pytest.mark.parametrize("kw, message", [
    (dict(temperature=-0.5), "temperature=-0.5 must be >= 0"),
    (dict(temperature=float("nan")), "temperature=nan must be >= 0"),
    (dict(temperature=1.0, top_p=0.0), r"top_p=0.0 must be in \(0, 1\]"),
    (dict(temperature=1.0, top_p=1.5), r"top_p=1.5 must be in \(0, 1\]"),
    (dict(temperature=1.0, top_k=0), "top_k=0 must be >= 1"),
])
def test_bad_sampling_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        check_sampling(**kw)


def test_too_many_new_tokens_name_the_limit():
    with pytest.raises(ValueError, match="use --max-new-tokens 61 or less"):
        generate(tiny_model(0), [1, 2, 3], 62, temperature=0)
    with pytest.raises(ValueError, match="the prompt has 65 tokens, more than the model's max_seq_len=64"):
        generate(tiny_model(0), [1] * 65, 0, temperature=0)


# ---- the command line on a checkpoint written with training.checkpoint ------------------------------
@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory):
    """A checkpoint of the tiny config on a small embedded corpus (its own BPE, vocab 512), holding a
    random model whose weights are scaled up so that greedy text is varied."""
    tmp = tmp_path_factory.mktemp("sample")
    cfg = compose_config(TINY + [f"paths.cache_dir={tmp / 'cache'}", "data.max_files=25", "data.vocab_size=512",
                                 "trainer.seq_len=96"])
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim > 1:  # matrices from std 0.02 to 0.4; norm weights stay 1
                param.mul_(20.0)
    path = save_weights(tmp / "run", model, cfg)
    return path, instantiate(cfg.data).tokenizer_path, model.eval()


def _cli(capsys, *args) -> str:
    assert main([str(a) for a in args]) == 0
    return capsys.readouterr().out.rstrip("\n")


def test_cli_greedy_with_the_run_tokenizer(run_checkpoint, capsys):
    path, tokenizer_path, model = run_checkpoint
    prompt = "def main():\n    return"
    out = _cli(capsys, path, "--prompt", prompt, "--max-new-tokens", 30, "--temperature", 0)
    assert out == _cli(capsys, path, "--prompt", prompt, "--max-new-tokens", 30, "--temperature", 0, "--no-cache")
    # reference: the data's tokenizer.json through the tokenizers library itself, and our generate
    tok = Tokenizer.from_file(tokenizer_path)
    ids = tok.encode(prompt, add_special_tokens=False).ids
    new = generate(model, ids, 30, temperature=0, stop_token=tok.token_to_id("<|endoftext|>"))
    assert out == tok.decode(ids + new) and out.startswith(prompt) and len(out) > len(prompt)


def test_cli_sampling_is_reproducible_by_seed(run_checkpoint, capsys):
    path = run_checkpoint[0]
    args = (path, "--prompt", "import os", "--max-new-tokens", 20, "--top-k", 50, "--top-p", 0.9)
    first = _cli(capsys, *args, "--seed", 3)
    assert _cli(capsys, *args, "--seed", 3) == first and _cli(capsys, *args, "--seed", 4) != first


def test_cli_on_an_exported_folder_and_a_run_directory(run_checkpoint, capsys, tmp_path):
    """The same text from the checkpoint, its run directory (newest checkpoint) and its Hugging Face
    export (models/export.py; weights and tokenizer files of the folder)."""
    path = run_checkpoint[0]
    export(path, tmp_path / "hf")
    args = ("--prompt", "for i in range(", "--max-new-tokens", 25, "--temperature", 0)
    out = _cli(capsys, path, *args)
    assert _cli(capsys, tmp_path / "hf", *args) == out
    assert _cli(capsys, path.parent.parent, *args) == out


def test_cli_with_the_gpt2_tokenizer_on_a_padded_vocabulary(capsys, tmp_path):
    """GPT-2's tokenizer (the hub's `gpt2` files, built offline from OpenAI's ranks: tests/gpt2_tokenizer.py)
    on a model with the paper's 50304 rows: the prompt's ids are GPT-2's published ones, greedy text with
    and without the cache agree, and the 47 padded rows are never drawn. Their embeddings (tied: also the
    head) are made to win the argmax, so without the tokenizer's vocab_size they would be."""
    from tests.gpt2_tokenizer import gpt2_folder

    folder = gpt2_folder(tmp_path / "gpt2")
    gpt2 = AutoTokenizer.from_pretrained(folder)
    assert gpt2.encode("The quick brown fox") == [464, 2068, 7586, 21831] and gpt2.eos_token_id == 50256
    cfg = compose_config(TINY + ["model.vocab_size=50304"])
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    prompt = gpt2.encode("The quick brown fox")
    with torch.no_grad():  # each padded row a scaled copy of the greedy winner's (its logit is > 0: the max)
        winner = int(model(torch.tensor([prompt]))[0, -1].argmax())
        emb = model.embed_tokens.weight
        emb[50257:] = emb[winner] * torch.linspace(2.0, 3.0, 47)[:, None]
    assert generate(model, prompt, 1, temperature=0) == [50303]  # the padded rows do win, unmasked
    new = generate(model, prompt, 20, temperature=0, vocab_size=len(gpt2))
    assert max(new) < 50257 and new == generate(model, prompt, 20, temperature=0, vocab_size=len(gpt2),
                                                use_cache=False)
    path = save_weights(tmp_path / "run", model, cfg)
    args = (path, "--prompt", "The quick brown fox", "--max-new-tokens", 20, "--temperature", 0, "--tokenizer", folder)
    out = _cli(capsys, *args)
    assert out == gpt2.decode(prompt + new) and _cli(capsys, *args, "--no-cache") == out


@pytest.mark.parametrize("args, message", [
    (("--top-p", "0"), r"top_p=0.0 must be in \(0, 1\]"),
    (("--top-p", "1.5"), r"top_p=1.5 must be in \(0, 1\]"),
    (("--temperature", "-1"), "temperature=-1.0 must be >= 0"),
    (("--max-new-tokens", "500"), "exceeds the model's max_seq_len=96"),
])
def test_cli_bad_arguments_print_one_line(run_checkpoint, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_checkpoint[0]), "--prompt", "x", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, err), err

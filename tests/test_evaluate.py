"""Tests of python -m models.evaluate: lm-eval tasks on a checkpoint, and --perplexity.

    python -m pytest -q tests/test_evaluate.py -p no:cacheprovider

lm-eval runs offline (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE) on the two local tasks of
tests/data/eval_task (8 documents each). Reference for its numbers: each continuation's
log-likelihood computed here with our own model (models.load of the checkpoint, not the export lm-eval
loads) on token ids from the `tokenizers` library, split the way lm-eval documents it for causal
models (trailing spaces of the context move to the continuation; encode context + continuation and
the context alone, the continuation is what follows the context's tokens); then acc = argmax over
choices, acc_norm = argmax of log-likelihood per character, perplexity = exp(-mean log-likelihood),
greedy = every continuation token is the argmax. Tolerance 1e-4 absolute on log-likelihoods: our
float32 forward vs transformers' (the export parity test's bound on logits; log-softmax sums a few).
Reference for --perplexity: the `final/val_loss` the trainer logged for a tiny run (same code path,
1e-5), and a brute-force mean cross-entropy over every window of the split computed here in float64.
Measured: the lm-eval import plus a local task index ~1.5 s, each lm-eval run ~1-2 s on 2 cores.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tokenizers import Tokenizer

import models
import train as train_module
from conftest import ROOT, TINY, compose_config, save_weights
from data.shards import read_shard
from models.evaluate import main, perplexity, run_tasks
from models.export import export
from training import checkpoint
from training.rundir import read_metrics

EVAL_TASKS = ROOT / "tests" / "data" / "eval_task"
DOCS = [json.loads(line) for line in (EVAL_TASKS / "docs.jsonl").read_text().splitlines()]
SMALL_DATA = ["data.max_files=25", "data.vocab_size=512"]  # a 25-file corpus with its own 512-token BPE


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub lookup would fail rather than download
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


# ---- lm-eval on a checkpoint ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    """A checkpoint of the tiny config (random weights, matrices scaled up so that the choices'
    log-likelihoods differ clearly), its tokenizer and our model with its weights."""
    tmp = tmp_path_factory.mktemp("eval")
    cfg = compose_config(TINY + [f"paths.cache_dir={tmp / 'cache'}", *SMALL_DATA])
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim > 1:
                param.mul_(5.0)
    path = save_weights(tmp / "run", model, cfg)
    return path, Tokenizer.from_file(instantiate(cfg.data).tokenizer_path), models.load(path)


@torch.no_grad()
def reference_loglikelihood(model, tok: Tokenizer, context: str, continuation: str) -> tuple[float, bool]:
    """(sum of log p(continuation tokens | context), whether each is the argmax), with our model."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tok.encode(context + continuation, add_special_tokens=False).ids
    n_context = len(tok.encode(context, add_special_tokens=False).ids)
    target = torch.tensor(whole[n_context:])
    assert 0 < n_context and len(target) and len(whole) <= model.config.max_seq_len  # no truncation involved
    logp = model(torch.tensor([whole[:-1]]))[0, n_context - 1:].double().log_softmax(-1)  # rows predict target
    return float(logp.gather(-1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())


@pytest.mark.parametrize("data", [[], SMALL_DATA], ids=["default data", "small data"])
def test_every_request_keeps_a_continuation_token_under_the_runs_tokenizer(data, tmp_path):
    """lm-eval asserts that each continuation keeps at least one token after the context's (a BPE merge
    across the boundary, e.g. '.' + '\"\"\"' or '[' + ']', leaves none and stops the run). The shipped tasks
    must run on the default run's export (its 4096-token BPE) as well as on the tests' small one."""
    cfg = compose_config(TINY + data + ([f"paths.cache_dir={tmp_path / 'cache'}"] if data else []))
    tok = Tokenizer.from_file(instantiate(cfg.data).tokenizer_path)
    for d in DOCS:
        for context, continuation in [(d["prefix"], d["continuation"])] + [(d["question"], c) for c in d["choices"]]:
            spaces = len(context) - len(context.rstrip())
            context, continuation = context[:len(context) - spaces], context[len(context) - spaces:] + continuation
            whole, alone = (tok.encode(t, add_special_tokens=False).ids for t in (context + continuation, context))
            assert len(whole) > len(alone), (context, continuation)


def reference_metrics(model, tok, docs) -> dict:
    choice_ll = [[reference_loglikelihood(model, tok, d["question"], c)[0] for c in d["choices"]] for d in docs]
    continuation = [reference_loglikelihood(model, tok, d["prefix"], d["continuation"]) for d in docs]
    per_char = [np.array(ll) / [len(c) for c in d["choices"]] for ll, d in zip(choice_ll, docs)]
    return {
        "choice_ll": choice_ll, "continuation_ll": [ll for ll, _ in continuation],
        "tiny_choice": {"acc": np.mean([np.argmax(ll) == d["answer"] for ll, d in zip(choice_ll, docs)]),
                        "acc_norm": np.mean([np.argmax(ll) == d["answer"] for ll, d in zip(per_char, docs)])},
        "tiny_continuation": {"perplexity": math.exp(-np.mean([ll for ll, _ in continuation])),
                              "acc": np.mean([greedy for _, greedy in continuation])},
    }


@pytest.fixture(scope="module")
def reference(random_checkpoint):
    _, tok, model = random_checkpoint
    return reference_metrics(model, tok, DOCS)


def test_lm_eval_loglikelihoods_and_metrics_equal_our_model(random_checkpoint, reference):
    path = random_checkpoint[0]
    results = run_tasks(path, ["tiny_choice", "tiny_continuation"], EVAL_TASKS, batch_size=1, log_samples=True)
    for sample in results["samples"]["tiny_choice"]:
        theirs = [resp[0][0] for resp in sample["resps"]]
        np.testing.assert_allclose(theirs, reference["choice_ll"][sample["doc_id"]], rtol=0, atol=1e-4)
    for sample in results["samples"]["tiny_continuation"]:
        assert sample["resps"][0][0][0] == pytest.approx(reference["continuation_ll"][sample["doc_id"]], abs=1e-4)
    assert len(results["samples"]["tiny_choice"]) == len(results["samples"]["tiny_continuation"]) == len(DOCS)
    for task in ("tiny_choice", "tiny_continuation"):
        for metric, value in reference[task].items():
            assert results["results"][task][f"{metric},none"] == pytest.approx(value, rel=1e-6), (task, metric)
    # the scaled random model prefers some wrong choices: acc is neither 0 nor 1, so argmax is exercised
    assert 0 < reference["tiny_choice"]["acc"] < 1


def test_cli_on_an_export_with_limit_and_batches_writes_the_json(random_checkpoint, tmp_path, capsys):
    """The command on an exported folder: --limit 4 scores the first 4 documents, --batch-size 3 pads
    batches (their numbers must not change), the table names the tasks, the JSON holds the metrics."""
    path, tok, model = random_checkpoint
    hf_dir = export(path, tmp_path / "hf")
    out = tmp_path / "results" / "eval.json"
    assert main([str(hf_dir), "--tasks", "tiny_choice,tiny_continuation", "--include-path", str(EVAL_TASKS),
                 "--limit", "4", "--batch-size", "3", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tiny_choice" in printed and "tiny_continuation" in printed and "perplexity" in printed
    saved = json.loads(out.read_text())
    assert "samples" not in saved and saved["n-samples"]["tiny_choice"] == {"original": 8, "effective": 4}
    expected = reference_metrics(model, tok, DOCS[:4])
    for task in ("tiny_choice", "tiny_continuation"):
        for metric, value in expected[task].items():
            assert saved["results"][task][f"{metric},none"] == pytest.approx(value, rel=1e-6), (task, metric)


def test_perplexity_options_with_tasks_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["no_model_needed", "--tasks", "tiny_choice", "--data", "embedded", "--seq-len", "16"])
    assert exit_.value.code == 2 and "--data, --seq-len go with --perplexity" in capsys.readouterr().err


def test_unknown_task_names_close_ones_and_the_include_path(random_checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(random_checkpoint[0]), "--tasks", "tiny_choise", "--include-path", str(EVAL_TASKS)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert "unknown lm-eval task(s) tiny_choise" in err and "did you mean tiny_choice" in err
    assert "--include-path DIR" in err


# ---- --perplexity equals the trainer's final/val_loss -----------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 10-step tiny run (train.train, as `python train.py <overrides>` runs it), its final/val_loss."""
    tmp = tmp_path_factory.mktemp("ppl")
    cfg = compose_config(TINY + [f"paths.cache_dir={tmp / 'cache'}", *SMALL_DATA, "trainer.max_steps=10",
                                 "trainer.checkpoint_interval=0", "trainer.eval_interval=0",
                                 "trainer.eval_batch_size=8"])  # 21 val windows: batches of 8, 8, 5
    train_module.train(cfg, tmp / "run")
    (final,) = [e["final/val_loss"] for e in read_metrics(tmp / "run") if "final/val_loss" in e]
    return tmp / "run", final, instantiate(cfg.data)


def test_perplexity_of_the_checkpoint_equals_the_final_val_loss(trained_run):
    run_dir, final, _ = trained_run
    (ckpt,) = checkpoint.list_checkpoints(run_dir)  # the final save: the weights final/val_loss was taken with
    for path in (run_dir, ckpt):
        result = perplexity(path)
        assert result["val_loss"] == pytest.approx(final, abs=1e-5)
        assert result["perplexity"] == pytest.approx(math.exp(final), rel=1e-5)
        assert (result["seq_len"], result["batch_size"], result["windows"]) == (32, 8, 21)


def test_perplexity_of_the_hf_export_through_transformers(trained_run, tmp_path, capsys):
    run_dir, final, _ = trained_run
    hf_dir = export(run_dir, tmp_path / "hf")
    out = tmp_path / "ppl.json"
    assert main([str(hf_dir), "--perplexity", "--data", str(run_dir), "--output", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["val_loss"] == pytest.approx(final, abs=1e-5) and saved["batch_size"] == 8
    assert f"val loss {saved['val_loss']:.6f}" in capsys.readouterr().out


@torch.no_grad()
def test_perplexity_of_a_shard_folder_equals_brute_force(trained_run):
    """--data DIR with val.bin (the embedded corpus' cache), seq_len 16 and a short last batch: the
    mean cross-entropy over every non-overlapping window, computed here directly."""
    run_dir, _, data = trained_run
    folder = Path(data.tokenizer_path).parent
    tokens = np.asarray(read_shard(folder / "val.bin"), dtype=np.int64)
    windows = (len(tokens) - 1) // 16
    rows = torch.from_numpy(np.stack([tokens[i * 16:i * 16 + 17] for i in range(windows)]))
    logits = models.load(run_dir)(rows[:, :-1]).double()
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten()).item()
    result = perplexity(run_dir, data=str(folder), seq_len=16, batch_size=5)
    assert result["windows"] == windows and windows % 5 != 0
    assert result["val_loss"] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--data", "no_such_data"], "neither a directory nor a data config: use one of embedded"),
    (["--data", "{empty}"], "holds no validation split (no meta.json listing val shards, no val.bin): "
                            "prepare the data with `python -m data.prepare data=NAME"),
    (["--data", "{run}", "--seq-len", "64"], "--seq-len 64 exceeds the model's maximum sequence length 32"),
    (["--data", "slimpajama_6b"], "is not ready (it holds no prepared shards, no meta.json): run `python -m "
                                  "data.prepare data=slimpajama_6b data.dir="),
    ([], "a Hugging Face folder does not record its data: pass --data"),
    (["--batch-size", "auto"], "--perplexity takes a positive integer --batch-size and --seq-len"),
    (["--limit", "4"], "--limit goes with --tasks: drop it or switch mode"),
])
def test_perplexity_errors_say_what_to_do(trained_run, tmp_path, monkeypatch, capsys, args, message):
    run_dir = trained_run[0]
    monkeypatch.setenv("LRSCHED_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data" / "slimpajama_6b").mkdir(parents=True)  # a data directory not (yet) prepared
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text("{}")  # enough to be taken for a Hugging Face folder
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", run=run_dir) for a in args]
    if "--seq-len" in args:
        hf_dir = run_dir  # a real model is needed to know its maximum length
    with pytest.raises(SystemExit) as exit_:
        main([str(hf_dir), "--perplexity", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err

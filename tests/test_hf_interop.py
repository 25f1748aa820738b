"""Tests of the Hugging Face interop: models/hf.py (the weight and config mapping), models/export.py
(`python -m models.export`), models.load and trainer.init_from=hf:DIR (training.checkpoint.load/restore).

References: transformers' own LlamaForCausalLM.from_pretrained / AutoTokenizer.from_pretrained read
offline (HF_HUB_OFFLINE=1), the `tokenizers` library encoding the run's tokenizer.json directly, and
the original tensors (an export imported back must equal them bit for bit).
Run: python -m pytest -q tests/test_hf_interop.py -p no:cacheprovider   (~15 s on 2 cores)
"""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate
from safetensors.torch import load_file
from tokenizers import Tokenizer

import models
from models import hf
from models.export import main as export_main
from tests.conftest import TINY, compose_config
from training import checkpoint
from training.resume import with_new_hyperparameters

PADDED = 4160  # the embedded corpus' 4096-token BPE padded by 64 rows the tokenizer never emits
TEXT = 'def mean(xs):\n    """Average of xs."""  # naïve ✓\n    return sum(xs) / len(xs)\n'


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub lookup would fail rather than download


def _random_checkpoint(run_dir, *overrides, seed=0):
    """A checkpoint written by training.checkpoint.save: random weights, norms away from 1 (so their
    mapping is tested), the run's config beside it."""
    cfg = compose_config(TINY + [f"model.vocab_size={PADDED}", *overrides])
    torch.manual_seed(seed)
    model = instantiate(cfg.model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    optimizer = torch.optim.AdamW(model.parameters())
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 7, "tokens": 0,
             "loader": {}, "rng": {}}
    return checkpoint.save(run_dir, state, cfg), model, cfg


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    ckpt, model, cfg = _random_checkpoint(root / "run")
    assert export_main([str(root / "run"), str(root / "hf")]) == 0  # a run directory: its newest checkpoint
    return ckpt, model.eval(), cfg, root / "hf"


def test_export_loads_offline_in_transformers_with_equal_logits(exported):
    from transformers import LlamaForCausalLM

    _, model, _, out = exported
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert (config["vocab_size"], config["num_hidden_layers"], config["hidden_size"]) == (PADDED, 2, 64)
    assert config["tie_word_embeddings"] is True
    assert "lm_head.weight" not in load_file(out / "model.safetensors")  # tied: stored once
    theirs = LlamaForCausalLM.from_pretrained(out, local_files_only=True).eval()
    assert theirs.dtype == torch.float32
    assert theirs.lm_head.weight.data_ptr() == theirs.model.embed_tokens.weight.data_ptr()
    tokens = torch.randint(0, 4096, (3, 32), generator=torch.Generator().manual_seed(1))  # full max_seq_len
    with torch.no_grad():
        ours, hf_logits = model(tokens), theirs(tokens).logits
    assert hf_logits.shape == (3, 32, PADDED)  # padded rows kept: the same logits on every row
    torch.testing.assert_close(hf_logits, ours, rtol=0, atol=1e-4)


def test_exported_tokenizer_is_the_runs_and_round_trips(exported):
    from transformers import AutoTokenizer

    _, _, cfg, out = exported
    reference = Tokenizer.from_file(instantiate(cfg.data).tokenizer_path)  # the run's own BPE
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    ids = tokenizer(TEXT)["input_ids"]
    assert ids == reference.encode(TEXT, add_special_tokens=False).ids
    assert tokenizer.decode(ids) == TEXT
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == reference.token_to_id("<|endoftext|>")
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == tokenizer.eos_token_id


def test_generate_never_emits_padded_rows(exported):
    from transformers import LlamaForCausalLM

    _, _, _, out = exported
    assert json.loads((out / "generation_config.json").read_text())["suppress_tokens"] == list(range(4096, PADDED))
    theirs = LlamaForCausalLM.from_pretrained(out, local_files_only=True).eval()
    with torch.no_grad():  # rows +-r: whatever the hidden state h, one of <h, +-r> is a huge logit
        r = torch.randn(64, generator=torch.Generator().manual_seed(2))
        theirs.model.embed_tokens.weight[4100], theirs.model.embed_tokens.weight[4101] = 1e3 * r, -1e3 * r
    prompt = torch.tensor([[5, 6, 7]])
    free = theirs.generate(prompt, max_new_tokens=5, do_sample=False, suppress_tokens=None)
    assert set(free[0, 3:].tolist()) <= {4100, 4101}  # without the list the padded rows win
    kept = theirs.generate(prompt, max_new_tokens=5, do_sample=False)
    assert max(kept[0, 3:].tolist()) < 4096


def test_export_with_the_gpt2_tokenizer(tmp_path):
    """--tokenizer with GPT-2's own tokenizer.json (built offline from OpenAI's ranks, tests/gpt2_tokenizer.py)
    and the paper's padded vocabulary, 50304 rows for 50257 tokens: transformers' AutoTokenizer on the
    export gives GPT-2's published ids, its end-of-text 50256 is the eos, and rows 50257..50303 are suppressed."""
    from transformers import AutoTokenizer

    from tests.gpt2_tokenizer import gpt2_folder

    folder = gpt2_folder(tmp_path / "gpt2")
    ckpt, model, _ = _random_checkpoint(tmp_path / "run", "model.vocab_size=50304", seed=3)
    assert export_main([str(ckpt), str(tmp_path / "hf"), "--tokenizer", str(folder / "tokenizer.json")]) == 0
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]  # GPT-2's ids, as published
    assert tokenizer.eos_token_id == 50256 and len(tokenizer) == 50257
    assert tokenizer.decode(tokenizer(TEXT)["input_ids"]) == TEXT
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 50256 and generation["suppress_tokens"] == list(range(50257, 50304))


def test_import_round_trips_exactly_with_a_fresh_optimizer(exported):
    ckpt, model, cfg, out = exported
    start = checkpoint.load(f"hf:{out}")  # what train.py calls for trainer.init_from=hf:DIR
    assert (start["step"], start["tokens"], start["optimizer"]) == (0, 0, None)
    torch.manual_seed(123)  # a differently initialized model: every weight must come from the folder
    fresh = instantiate(cfg.model)
    optimizer = torch.optim.AdamW(fresh.parameters())
    assert with_new_hyperparameters(start["optimizer"], optimizer) is None
    checkpoint.restore(start, fresh, optimizer, loader=None)
    original = model.state_dict()
    assert fresh.state_dict().keys() == original.keys()
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    assert not optimizer.state  # no moments: the optimizer starts afresh
    for loaded in (models.load(out), models.load(ckpt), models.load(ckpt / checkpoint.STATE_FILE)):
        assert all(torch.equal(t, original[n]) for n, t in loaded.state_dict().items())
        assert not loaded.training


def test_shape_mismatch_names_the_differing_fields(exported):
    _, _, _, out = exported
    start = checkpoint.load(f"hf:{out}")
    cfg = compose_config(TINY + [f"model.vocab_size={PADDED}", "model.n_layer=3", "model.d_model=128"])
    other = instantiate(cfg.model)
    with pytest.raises(ValueError) as err:
        checkpoint.restore(start, other, torch.optim.AdamW(other.parameters()), loader=None)
    message = str(err.value)
    assert "model.n_layer: 3 here, 2 in" in message and "model.d_model: 128 here, 64 in" in message
    assert "model.mlp_hidden: 512 here, 256 in" in message and "model.vocab_size" not in message
    assert "model.n_layer=2 model.d_model=64" in message  # the override that fixes it
    # at the door (training.setup's config check): the same fields, from config.json alone
    hf.check_start(out, compose_config(TINY + [f"model.vocab_size={PADDED}"]).model)  # fits: no error
    with pytest.raises(ValueError, match=r"trainer.init_from=hf:.*model.n_layer: 3 here, 2 in .*model.n_layer=2"):
        hf.check_start(out, cfg.model)


def test_unsupported_hugging_face_models_are_refused():
    from transformers import LlamaConfig as HFConfig

    gqa = HFConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                   num_attention_heads=4, num_key_value_heads=2)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        hf.model_kwargs(gqa)
    untied = {"model.embed_tokens.weight": torch.zeros(4, 2), "lm_head.weight": torch.ones(4, 2)}
    with pytest.raises(ValueError, match="untied"):
        hf.from_hf_state(untied)


def test_bad_paths_fail_with_the_fix(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        checkpoint.load(f"hf:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        hf.check_start(tmp_path / "missing", compose_config(TINY).model)
    with pytest.raises(SystemExit) as exit_code:
        export_main([str(tmp_path / "none"), str(tmp_path / "out"), "--tokenizer", str(tmp_path / "no.json")])
    assert exit_code.value.code == 2 and "--tokenizer" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="does not exist: give a checkpoint directory"):
        models.load(tmp_path / "nowhere")
    with pytest.raises(SystemExit) as exit_code:
        export_main([str(tmp_path / "nowhere"), str(tmp_path / "out")])
    assert exit_code.value.code == 2 and "nowhere does not exist" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        export_main([str(tmp_path / "none"), str(tmp_path / "busy")])
    assert "not an exported model folder" in capsys.readouterr().err


def test_config_mapping_round_trips_non_default_rope_and_eps():
    """theta, eps and the MLP width are carried both ways (the defaults would hide a dropped key)."""
    from transformers import LlamaForCausalLM

    from models.llama import Llama

    torch.manual_seed(4)
    kwargs = dict(vocab_size=96, n_layer=1, n_head=2, d_model=32, max_seq_len=24, rope_theta=500000.0,
                  norm_eps=1e-6, mlp_hidden=80, init_std=0.05)
    ours = Llama(**kwargs, kernels="torch").eval()
    config = hf.hf_config(ours.config)
    assert hf.model_kwargs(config) == kwargs
    theirs = LlamaForCausalLM(config).eval()
    theirs.load_state_dict(hf.to_hf_state(ours.state_dict()), strict=False)
    tokens = torch.randint(0, 96, (2, 24), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(theirs(tokens).logits, ours(tokens), rtol=0, atol=1e-4)
    assert hf.from_hf_state(theirs.state_dict()).keys() == ours.state_dict().keys()


def test_import_of_a_bfloat16_folder_is_the_exact_upcast(exported, tmp_path):
    from transformers import LlamaForCausalLM

    _, model, _, out = exported
    LlamaForCausalLM.from_pretrained(out, local_files_only=True).to(torch.bfloat16).save_pretrained(tmp_path)
    start = checkpoint.load(f"hf:{tmp_path}")
    for name, tensor in model.state_dict().items():
        assert start["model"][name].dtype == torch.float32
        assert torch.equal(start["model"][name], tensor.to(torch.bfloat16).float()), name


def test_a_trained_run_exports_and_trains_on_from_the_folder(tmp_path):
    """End to end through the trainer: a 20-step run exported, then trainer.init_from=hf:DIR with a new
    schedule. The child starts from exactly the parent's weights (its step-0 validation loss is the
    parent's step-20 one, same batches), counts its own steps from 0, and records no lineage: a weights-
    only start has no parent run for the analysis to splice."""
    import train as train_module
    from training.rundir import read_metrics

    parent_cfg = compose_config(TINY)
    train_module.train(parent_cfg, tmp_path / "parent")
    assert export_main([str(tmp_path / "parent"), str(tmp_path / "hf")]) == 0
    child_cfg = compose_config(TINY + [f"trainer.init_from=hf:{tmp_path / 'hf'}", "schedule=constant",
                                       "trainer.max_steps=10", "trainer.checkpoint_interval=0"])
    train_module.train(child_cfg, tmp_path / "child")

    def val(run, step):
        return [e["val/loss"] for e in read_metrics(tmp_path / run) if e["step"] == step and "val/loss" in e]
    assert val("parent", 20) and val("child", 0) == pytest.approx(val("parent", 20), abs=1e-6)
    child = read_metrics(tmp_path / "child")
    assert max(e["step"] for e in child) == 10 and not (tmp_path / "child" / "lineage.json").exists()
    assert child[-1]["final/val_loss"] < val("child", 0)[0] + 0.5  # trains on, sanely, from there


def test_a_mismatched_folder_fails_at_the_config_check(exported):
    """trainer.init_from=hf:DIR is checked with the other settings (config.json only, before any data or
    model is built): the differing fields are named."""
    from training.setup import check_config

    *_, folder = exported
    cfg = compose_config(TINY + [f"model.vocab_size={PADDED}", "model.d_model=128", f"trainer.init_from=hf:{folder}"])
    with pytest.raises(ValueError, match="d_model"):
        check_config(cfg)
    with pytest.raises((ValueError, FileNotFoundError), match="config.json"):
        check_config(compose_config(TINY + [f"trainer.init_from=hf:{folder}_missing"]))

"""The one mapping between our Llama (models/llama.py) and Hugging Face `LlamaForCausalLM`.

Weights: the names differ only in a prefix and three renames (attn_norm -> input_layernorm,
mlp_norm -> post_attention_layernorm, attn -> self_attn); tensors are copied unchanged. Our RoPE
already uses transformers' half-rotation convention (models/kernels/rope.py), so q_proj / k_proj
need no row permutation (Meta's original checkpoints, which rotate interleaved pairs, would).
The LM head is tied to the embedding: exported as `tie_word_embeddings: true` with no
`lm_head.weight`; an imported folder whose lm_head differs from its embedding is refused.

Padded vocabulary: our embedding may have more rows than the tokenizer has tokens (GPT-2's 50257
padded to 50304). The rows are exported as they are (config vocab_size = our padded size), so the
logits match ours on every row and an export imports back bit for bit; the generation config lists
the padded ids in `suppress_tokens`, so `generate` never emits an id the tokenizer cannot decode.

    hf_config(model.config, eos_token_id=0)        # -> transformers.LlamaConfig
    to_hf_state(model.state_dict())                # our names -> HF names (no lm_head: tied)
    from_hf_state(hf_model.state_dict())           # HF names -> ours
    model_kwargs(hf_config)                        # -> Llama(**kwargs) arguments
    check_fits(kwargs, cfg.model)                  # ValueError naming every differing model.* field
    check_start(hf_dir, cfg.model)                 # the same for trainer.init_from=hf:DIR, config.json only
    save_pretrained(model, out_dir, tokenizer_file)  # config.json, safetensors, tokenizer, generation config
    kwargs, state = load_pretrained(hf_dir)        # a local folder (offline), weights in float32

Used by models/export.py, models.load and trainer.init_from=hf:DIR (training/checkpoint.py).
Tested by tests/test_hf_interop.py and tests/test_model.py.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch

EOS_TOKEN = "<|endoftext|>"  # the document separator of the embedded corpus and of GPT-2's tokenizer
HF_PREFIX = "hf:"            # trainer.init_from=hf:DIR names a Hugging Face folder, not a checkpoint

# (ours, theirs) substrings of parameter names, applied in order; the "model." prefix comes on top.
_RENAMES = (("attn_norm.", "input_layernorm."), ("mlp_norm.", "post_attention_layernorm."), ("attn.", "self_attn."))
# Llama(...) argument <- transformers.LlamaConfig attribute
_FIELDS = {"vocab_size": "vocab_size", "n_layer": "num_hidden_layers", "n_head": "num_attention_heads",
           "d_model": "hidden_size", "max_seq_len": "max_position_embeddings", "rope_theta": "rope_theta",
           "norm_eps": "rms_norm_eps", "mlp_hidden": "intermediate_size"}
_COMPARED = ("vocab_size", "n_layer", "n_head", "d_model", "mlp_hidden", "rope_theta", "norm_eps")


def _transformers5() -> bool:
    """transformers >= 5: RoPE theta in `rope_parameters`, `dtype=` for from_pretrained (4.x: rope_theta,
    torch_dtype=; 4.x would keep an unknown rope_parameters silently and rotate with its default theta)."""
    from transformers import LlamaConfig

    return "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters


def hf_config(config, **extra):
    """A transformers.LlamaConfig for our LlamaConfig `config`; `extra` (eos_token_id=..., attn_implementation=...)
    passes through."""
    from transformers import LlamaConfig

    rope = ({"rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta}} if _transformers5()
            else {"rope_theta": config.rope_theta})
    return LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.d_model, intermediate_size=config.mlp_hidden,
        num_hidden_layers=config.n_layer, num_attention_heads=config.n_head, num_key_value_heads=config.n_head,
        head_dim=config.head_dim, max_position_embeddings=config.max_seq_len, rms_norm_eps=config.norm_eps,
        hidden_act="silu", tie_word_embeddings=True, attention_bias=False, mlp_bias=False, attention_dropout=0.0,
        initializer_range=config.init_std, **rope, **extra)


def _rope_theta(config) -> float:
    # transformers >= 5 keeps theta in rope_parameters; older configs have a top-level rope_theta
    params = getattr(config, "rope_parameters", None) or {}
    scaling = getattr(config, "rope_scaling", None) or {}
    rope_type = params.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if rope_type != "default":
        raise ValueError(f"the Hugging Face config uses RoPE scaling {rope_type!r}; our Llama has plain RoPE "
                         f"only: import a model without rope scaling (rope_type 'default').")
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def model_kwargs(config) -> dict:
    """Llama(...) arguments for a transformers LlamaConfig; ValueError for what our Llama cannot express."""
    if getattr(config, "model_type", None) != "llama":
        raise ValueError(f"the Hugging Face folder holds a {getattr(config, 'model_type', '?')!r} model; "
                         f"only 'llama' (LlamaForCausalLM) maps onto models.llama.Llama.")
    unsupported = {
        "num_key_value_heads": (config.num_key_value_heads, config.num_attention_heads),  # no GQA
        "head_dim": (getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
                     config.hidden_size // config.num_attention_heads),
        "hidden_act": (config.hidden_act, "silu"), "attention_bias": (config.attention_bias, False),
        "mlp_bias": (getattr(config, "mlp_bias", False), False),
        "tie_word_embeddings": (config.tie_word_embeddings, True),
    }
    bad = {k: v for k, (v, want) in unsupported.items() if v != want}
    if bad:
        wants = ", ".join(f"{k}={unsupported[k][1]}" for k in bad)
        raise ValueError(f"the Hugging Face Llama has {bad}, which our Llama cannot represent (it needs {wants}).")
    kwargs = {ours: getattr(config, theirs) for ours, theirs in _FIELDS.items() if ours != "rope_theta"}
    return {**kwargs, "rope_theta": _rope_theta(config), "init_std": float(config.initializer_range)}


def check_fits(kwargs: dict, model_cfg, source: str = "the Hugging Face folder") -> None:
    """ValueError listing every model.* field where `kwargs` (from model_kwargs) and the model config
    differ (max_seq_len may differ: RoPE tables are derived, not weights)."""
    from models.llama import LlamaConfig

    cfg = LlamaConfig(**{k: model_cfg[k] for k in ("vocab_size", "n_layer", "n_head", "d_model", "max_seq_len")},
                      **{k: model_cfg[k] for k in ("rope_theta", "norm_eps", "mlp_hidden") if k in model_cfg})
    ours = {k: getattr(cfg, k) for k in _COMPARED}
    diff = {k: (ours[k], kwargs[k]) for k in _COMPARED if ours[k] != kwargs[k]}
    if diff:
        fields = "; ".join(f"model.{k}: {a} here, {b} in {source}" for k, (a, b) in diff.items())
        fix = " ".join(f"model.{k}={b}" for k, (_, b) in diff.items())
        raise ValueError(f"{source} does not fit this model config ({fields}). Override the model to match "
                         f"({fix}) or pick a model config of that shape.")


def to_hf_state(state: dict) -> dict:
    """Our state dict -> LlamaForCausalLM names (the tied lm_head is left out, as transformers saves it)."""
    out = {}
    for name, tensor in state.items():
        for ours, theirs in _RENAMES:
            name = name.replace(ours, theirs)
        out["model." + name] = tensor
    return out


def from_hf_state(state: dict) -> dict:
    """LlamaForCausalLM state dict -> our names. A separate lm_head must equal the embedding (tied)."""
    head = state.get("lm_head.weight")
    embed = state.get("model.embed_tokens.weight")
    if head is not None and embed is not None and not torch.equal(head, embed):
        raise ValueError("the Hugging Face model's lm_head differs from its embedding (untied); our Llama ties "
                         "them: only a model with tie_word_embeddings=true can be imported.")
    out = {}
    for name, tensor in state.items():
        if name == "lm_head.weight" or name.endswith("rotary_emb.inv_freq"):  # tied / derived, not weights
            continue
        if not name.startswith("model."):
            raise ValueError(f"unexpected weight {name!r} in the Hugging Face state: not a LlamaForCausalLM")
        name = name.removeprefix("model.")
        for ours, theirs in reversed(_RENAMES):
            name = name.replace(theirs, ours)
        out[name] = tensor
    return out


def _tokenizer(tokenizer_file: str | Path, eos_token: str):
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file))
    if tokenizer.convert_tokens_to_ids(eos_token) in (None, tokenizer.unk_token_id):
        raise ValueError(f"the tokenizer {tokenizer_file} has no {eos_token!r} token: name its end-of-text "
                         f"token (--eos-token).")
    # The runs put eos between documents and no bos; GPT-2's convention: bos = eos = pad = <|endoftext|>.
    tokenizer.add_special_tokens({"eos_token": eos_token, "bos_token": eos_token, "pad_token": eos_token})
    tokenizer.model_max_length = 10**30  # set below from the model; HF's "very large" default otherwise
    return tokenizer


def save_pretrained(model, out_dir: str | Path, tokenizer_file: str | Path | None,
                    eos_token: str = EOS_TOKEN) -> Path:
    """Write `model` (our Llama) as a LlamaForCausalLM folder: config.json, model.safetensors,
    generation_config.json and, given a tokenizer.json, the files AutoTokenizer loads."""
    from transformers import GenerationConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    c = model.config
    tokenizer = _tokenizer(tokenizer_file, eos_token) if tokenizer_file else None
    if tokenizer is not None and len(tokenizer) > c.vocab_size:
        raise ValueError(f"the tokenizer {tokenizer_file} has {len(tokenizer)} tokens but the model only "
                         f"{c.vocab_size} embedding rows: pass the tokenizer this model was trained with.")
    eos = tokenizer.eos_token_id if tokenizer is not None else None
    config = hf_config(c, eos_token_id=eos, bos_token_id=eos, pad_token_id=eos)
    hf = LlamaForCausalLM(config)
    missing, unexpected = hf.load_state_dict(to_hf_state(model.state_dict()), strict=False)
    if missing != ["lm_head.weight"] or unexpected:  # lm_head is the tied embedding
        raise RuntimeError(f"weight mapping incomplete: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    n_tokens = len(tokenizer) if tokenizer is not None else c.vocab_size
    hf.generation_config = GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
        suppress_tokens=list(range(n_tokens, c.vocab_size)) or None)  # padded rows: never generated
    hf.save_pretrained(out_dir, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.model_max_length = c.max_seq_len
        tokenizer.save_pretrained(out_dir)
        # transformers 5 names the class TokenizersBackend, which 4.x (e.g. pinned by lm-eval) lacks;
        # PreTrainedTokenizerFast is the same class in 5 and the fast tokenizer in 4: both load it.
        config_file = out_dir / "tokenizer_config.json"
        config = json.loads(config_file.read_text())
        config.update(tokenizer_class="PreTrainedTokenizerFast")
        config.pop("backend", None)
        config_file.write_text(json.dumps(config, indent=2) + "\n")
    return out_dir


def hf_dir(init_from: str) -> Path | None:
    """The folder of trainer.init_from=hf:DIR, or None for a checkpoint path."""
    return Path(init_from[len(HF_PREFIX):]).expanduser() if str(init_from).startswith(HF_PREFIX) else None


def _read_config(directory: Path):
    from transformers import AutoConfig

    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} is not a Hugging Face model folder (no config.json): give a local "
                                f"folder written by save_pretrained or `python -m models.export`.")
    return AutoConfig.from_pretrained(directory, local_files_only=True)


def check_start(directory: str | Path, model_cfg) -> None:
    """trainer.init_from=hf:DIR checked at the door (config.json only, no weights read): the folder
    exists, holds a Llama our model can represent, of the shape of `model_cfg` (else the differing fields)."""
    directory = Path(directory).expanduser()
    check_fits(model_kwargs(_read_config(directory)), model_cfg,
               f"trainer.init_from=hf:{directory}")


def load_pretrained(directory: str | Path) -> tuple[dict, dict]:
    """(Llama kwargs, our float32 state dict) of a local LlamaForCausalLM folder, read offline."""
    from transformers import LlamaForCausalLM

    directory = Path(directory).expanduser()
    kwargs = model_kwargs(_read_config(directory))
    dtype = "dtype" if _transformers5() else "torch_dtype"
    hf = LlamaForCausalLM.from_pretrained(directory, local_files_only=True, **{dtype: torch.float32})  # bf16 -> exact
    state = from_hf_state({k: v.detach().clone() for k, v in hf.state_dict().items()})
    return kwargs, state


def start_state(directory: str | Path) -> dict:
    """trainer.init_from=hf:DIR as a checkpoint-like start (training.checkpoint.load): the folder's
    weights under our names, its shape ("hf_model", checked by `restore_weights`), step 0 and no
    optimizer, loader or RNG state (a fresh optimizer: training.resume.with_new_hyperparameters keeps None)."""
    kwargs, weights = load_pretrained(directory)
    return {"model": weights, "hf_model": kwargs, "source": str(directory), "optimizer": None,
            "step": 0, "tokens": 0, "loader": None, "rng": None}


def restore_weights(state: dict, model) -> None:
    """Load a `start_state` into a freshly built (possibly DDP/FSDP-wrapped raw) model, after checking
    that the folder's shape fits the model config; a mismatch names every differing model.* field."""
    from dataclasses import asdict

    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    check_fits(state["hf_model"], asdict(model.config), f"the Hugging Face folder {state['source']}")
    set_model_state_dict(model, state["model"], options=StateDictOptions(full_state_dict=True))

"""Models: the Llama decoder (llama.py), its fused ops (kernels/, one op per file), the Hugging Face
mapping (hf.py) and the export command (export.py).

    from models.llama import Llama
    model = Llama(vocab_size=50304, n_layer=12, n_head=12, d_model=768, max_seq_len=512)

    import models
    model = models.load("outputs/run/checkpoints/step_0000400")   # our Llama with its weights, eval mode
    model = models.load("outputs/run")                            # a run directory: its newest checkpoint
    model = models.load("exported_hf_dir")                        # a LlamaForCausalLM folder
"""

from __future__ import annotations

from pathlib import Path


def load(checkpoint: str | Path, device: str | None = "cpu"):
    """Our Llama with the weights of `checkpoint`, in eval mode on `device`: a checkpoint directory
    (<run dir>/checkpoints/step_N) or its state.pt, a run directory (its newest good checkpoint), or a
    local Hugging Face LlamaForCausalLM folder (one with config.json). The model config is the one the
    checkpoint recorded (its config.yaml), so no Hydra overrides are needed."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from models import hf
    from models.llama import Llama
    from training import checkpoint as ckpt

    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a checkpoint directory (<run dir>/checkpoints/"
                                f"step_N), a run directory or a Hugging Face model folder.")
    if path.is_dir() and (path / "config.json").is_file():  # a Hugging Face folder
        kwargs, state = hf.load_pretrained(path)
        model = Llama(**kwargs)
    else:
        if path.is_dir() and not (path / ckpt.STATE_FILE).is_file() and ckpt.list_checkpoints(path):
            newest = ckpt.latest_checkpoint(path)
            if newest is None:
                raise ValueError(f"every checkpoint under {path}/checkpoints fails its checksum: none to load.")
            path = newest
        state = ckpt.load(path)["model"]  # verified; clear errors for a missing or corrupt file
        config_file = (path if path.is_dir() else path.parent) / ckpt.CONFIG_FILE
        if not config_file.is_file():
            raise FileNotFoundError(f"{config_file} is missing: the checkpoint does not say which model it holds. "
                                    f"Restore it from the run directory's config.yaml.")
        model = instantiate(OmegaConf.load(config_file).model)
    model.load_state_dict(state)
    return model.to(device).eval() if device else model.eval()

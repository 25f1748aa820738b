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


def is_hf_folder(path: str | Path) -> bool:
    """A local Hugging Face model folder (one with config.json), as opposed to a checkpoint or run directory."""
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def existing(path: str | Path) -> Path:
    """`path` (user-expanded), or FileNotFoundError saying what the model commands take."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a checkpoint directory (<run dir>/checkpoints/"
                                f"step_N), a run directory or a Hugging Face model folder.")
    return path


def checkpoint_dir_of(path: str | Path) -> Path:
    """The checkpoint directory that `path` stands for: a state.pt's directory, a run directory's newest
    good checkpoint, else `path` itself (also a run directory whose checkpoints all fail their checksum)."""
    from training import checkpoint as ckpt

    path = Path(path)
    if path.is_file():
        return path.parent
    if path.is_dir() and not (path / ckpt.STATE_FILE).is_file() and ckpt.list_checkpoints(path):
        return ckpt.latest_checkpoint(path) or path
    return path


def check_device(device: str) -> None:
    """The --device of the model commands (sample, evaluate): cuda only where CUDA is visible."""
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device} but no CUDA device is visible: use --device cpu")


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

    path = existing(checkpoint)
    if is_hf_folder(path):
        kwargs, state = hf.load_pretrained(path)
        model = Llama(**kwargs)
    else:
        directory = checkpoint_dir_of(path)
        if path.is_dir() and not (directory / ckpt.STATE_FILE).is_file() and ckpt.list_checkpoints(directory):
            raise ValueError(f"every checkpoint under {path}/checkpoints fails its checksum: none to load.")
        state = ckpt.load(path if path.is_file() else directory)["model"]  # verified; clear errors if bad
        config_file = directory / ckpt.CONFIG_FILE
        if not config_file.is_file():
            raise FileNotFoundError(f"{config_file} is missing: the checkpoint does not say which model it holds. "
                                    f"Restore it from the run directory's config.yaml.")
        model = instantiate(OmegaConf.load(config_file).model)
    model.load_state_dict(state)
    return model.to(device).eval() if device else model.eval()

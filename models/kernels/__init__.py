"""Fused ops of the Llama model, one op per name, each with its plain-torch reference beside it.

    rmsnorm.py        rms_norm_torch(x, weight, eps)
    rope.py           rope_cos_sin(seq_len, head_dim, theta, device), apply_rope_torch(q, k, cos, sin)
    swiglu.py         swiglu_torch(gate, up)
    cross_entropy.py  linear_cross_entropy_torch(hidden, weight, targets, ignore_index=-100)

The Triton versions are reached through the same modules under the same names with a `_triton`
suffix (rms_norm_triton, apply_rope_triton, swiglu_triton, linear_cross_entropy_triton) and take
the same arguments. Their code lives in `<op>_triton.py`, the only files that import Triton, loaded
on the first use of such a name: the package, the model's torch path and the analysis import on
machines without Triton (macOS, Windows, `pip install -e .[analysis]`). Each `<op>_triton.py` reads:
Triton kernels -> their launchers, registered as torch.library custom ops (opaque nodes for
torch.compile, so a compiled model stays one graph around them) -> a torch.autograd.Function wiring
forward to backward -> the public function. They run on CUDA, and on CPU under the Triton
interpreter (TRITON_INTERPRET=1 set before they are first imported; tests/conftest.py does it when no
GPU is present). The model picks one set by `kernels` ("auto" | "torch" | "triton"), resolved here:

    impl = resolve_kernels("auto", device_type="cuda")   # -> "triton", or "torch" (logged) without Triton
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

KERNEL_CHOICES = ("auto", "torch", "triton")


def triton_missing() -> str | None:
    """Why Triton cannot be imported here ("ModuleNotFoundError: No module named 'triton'"), or None.

    Not cached: an import that succeeded is a dict lookup, and a test may make Triton unimportable."""
    try:
        import triton  # noqa: F401
    except ImportError as error:  # also a broken install (a missing shared library of the wheel)
        return f"{type(error).__name__}: {error}"
    return None


def triton_half(module: str, name: str):
    """Attribute `name` of the Triton half of op module `module` (models.kernels.rmsnorm ->
    models.kernels.rmsnorm_triton): each op module's `__getattr__` (PEP 562) calls this for the names
    it does not define, so Triton is imported on the first use of a Triton name, and only then."""
    if name.startswith("__"):  # copy, pickle, inspect and doctest probe dunders: never import Triton for them
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    missing = triton_missing()
    if missing is not None:
        raise ImportError(f"{module}.{name} is part of the Triton kernels, and Triton cannot be imported here "
                          f"({missing}). Install it (pip install triton; Linux with CUDA) or use the torch "
                          f"kernels: model.kernels=torch, or auto (torch wherever Triton is missing).")
    half = importlib.import_module(f"{module}_triton")
    try:
        return getattr(half, name)
    except AttributeError:
        raise AttributeError(f"module {module!r} has no attribute {name!r}") from None


def triton_interpreted() -> bool:
    """True when the Triton kernels were built for the CPU interpreter (TRITON_INTERPRET=1 was set
    before they were first imported; triton reads it when the kernels are decorated). False without
    Triton."""
    if triton_missing() is not None:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    from models.kernels import rmsnorm_triton

    return isinstance(rmsnorm_triton._rms_norm_forward_kernel, InterpretedFunction)


def resolve_kernels(name: str, device_type: str | None) -> str:
    """Map a `kernels` setting to the implementation to use: "torch" or "triton".

    "auto" means Triton on CUDA, else torch (device_type None: not known yet -> torch); on CUDA
    without an importable Triton it falls back to torch and logs why (a warning: the run works, slower).
    "triton" is honoured on CUDA, and on other devices only under the Triton interpreter (tests); it
    fails with the fix when Triton cannot be imported.
    """
    if name not in KERNEL_CHOICES:
        raise ValueError(f"kernels={name!r} is not one of {KERNEL_CHOICES}; set model.kernels=auto")
    if name == "torch" or (name == "auto" and device_type != "cuda"):
        return "torch"
    missing = triton_missing()
    if name == "auto":
        if missing is not None:
            log.warning("model.kernels=auto: using the torch kernels on %s because Triton cannot be imported "
                        "(%s); pip install triton for the fused kernels, or set model.kernels=torch to "
                        "silence this.", device_type, missing)
            return "torch"
        return "triton"
    if missing is not None:
        raise ValueError(f"model.kernels=triton but Triton cannot be imported ({missing}): pip install triton "
                         f"(Linux with CUDA), or use model.kernels=auto (torch where Triton is missing) or torch.")
    if device_type not in (None, "cuda") and not triton_interpreted():
        raise ValueError(f"kernels='triton' runs on CUDA; on {device_type} only under the Triton interpreter "
                         f"(export TRITON_INTERPRET=1 before starting Python, slow: for tests). "
                         f"Use model.kernels=auto or torch on {device_type}.")
    return "triton"

"""Fused ops of the Llama model, one op per file, each with its plain-torch reference beside it.

    rmsnorm.py        rms_norm_torch(x, weight, eps)
    rope.py           rope_cos_sin(seq_len, head_dim, theta, device), apply_rope_torch(q, k, cos, sin)
    swiglu.py         swiglu_torch(gate, up)
    cross_entropy.py  linear_cross_entropy_torch(hidden, weight, targets, ignore_index=-100)

The Triton versions live in the same files under the same names with a `_triton` suffix
(rms_norm_triton, apply_rope_triton, swiglu_triton, linear_cross_entropy_triton) and take the
same arguments. The model picks one set by `kernels` ("auto" | "torch" | "triton"), resolved here:

    impl = resolve_kernels("auto", device_type="cuda")   # -> "triton" or "torch"
"""

import importlib.util

from models.kernels import cross_entropy, rmsnorm, rope, swiglu

KERNEL_CHOICES = ("auto", "torch", "triton")


def triton_kernels_available() -> bool:
    """True when triton imports and every op file defines its Triton function."""
    if importlib.util.find_spec("triton") is None:
        return False
    return (hasattr(rmsnorm, "rms_norm_triton") and hasattr(rope, "apply_rope_triton")
            and hasattr(swiglu, "swiglu_triton") and hasattr(cross_entropy, "linear_cross_entropy_triton"))


def resolve_kernels(name: str, device_type: str | None) -> str:
    """Map a `kernels` setting to the implementation to use: "torch" or "triton".

    "auto" means Triton on CUDA when available, else torch (device_type None: not known yet -> torch).
    "triton" is honoured on any device (on CPU it runs under TRITON_INTERPRET=1, for tests).
    """
    if name not in KERNEL_CHOICES:
        raise ValueError(f"kernels={name!r} is not one of {KERNEL_CHOICES}; set model.kernels=auto")
    if name == "torch":
        return "torch"
    if name == "triton":
        if not triton_kernels_available():
            raise ValueError("kernels='triton': the Triton kernels are not implemented yet (or triton is not "
                             "installed); use model.kernels=torch (or auto)")
        return "triton"
    return "triton" if device_type == "cuda" and triton_kernels_available() else "torch"

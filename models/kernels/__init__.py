"""Fused ops of the Llama model, one op per file, each with its plain-torch reference beside it.

    rmsnorm.py        rms_norm_torch(x, weight, eps)
    rope.py           rope_cos_sin(seq_len, head_dim, theta, device), apply_rope_torch(q, k, cos, sin)
    swiglu.py         swiglu_torch(gate, up)
    cross_entropy.py  linear_cross_entropy_torch(hidden, weight, targets, ignore_index=-100)

The Triton versions live in the same files under the same names with a `_triton` suffix
(rms_norm_triton, apply_rope_triton, swiglu_triton, linear_cross_entropy_triton) and take the
same arguments. They run on CUDA, and on CPU under the Triton interpreter (TRITON_INTERPRET=1 set
before this package is imported; tests/conftest.py does it when no GPU is present). Each Triton
op file reads: Triton kernels -> their launchers, registered as torch.library custom ops (opaque
nodes for torch.compile, so a compiled model stays one graph around them) -> a
torch.autograd.Function wiring forward to backward -> the public function. The model picks one set
by `kernels` ("auto" | "torch" | "triton"), resolved here:

    impl = resolve_kernels("auto", device_type="cuda")   # -> "triton" or "torch"
"""

from models.kernels import rmsnorm

KERNEL_CHOICES = ("auto", "torch", "triton")


def triton_interpreted() -> bool:
    """True when the Triton kernels were built for the CPU interpreter (TRITON_INTERPRET=1 was set
    before models.kernels was first imported; triton reads it when the kernels are decorated)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(rmsnorm._rms_norm_forward_kernel, InterpretedFunction)


def resolve_kernels(name: str, device_type: str | None) -> str:
    """Map a `kernels` setting to the implementation to use: "torch" or "triton".

    "auto" means Triton on CUDA, else torch (device_type None: not known yet -> torch).
    "triton" is honoured on CUDA, and on other devices only under the Triton interpreter (tests).
    Triton itself is a hard requirement (every op file imports it), so it is never missing here.
    """
    if name not in KERNEL_CHOICES:
        raise ValueError(f"kernels={name!r} is not one of {KERNEL_CHOICES}; set model.kernels=auto")
    if name == "torch":
        return "torch"
    if name == "triton":
        if device_type not in (None, "cuda") and not triton_interpreted():
            raise ValueError(f"kernels='triton' runs on CUDA; on {device_type} only under the Triton interpreter "
                             f"(export TRITON_INTERPRET=1 before starting Python, slow: for tests). "
                             f"Use model.kernels=auto or torch on {device_type}.")
        return "triton"
    return "triton" if device_type == "cuda" else "torch"

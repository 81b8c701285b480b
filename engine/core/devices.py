"""Whether the device a config asks for is here. torch is imported only to answer for a GPU
(`auto` and `cpu` need no answer), so the run store stays light for every other config."""

from __future__ import annotations


def device_problem(name: str) -> str | None:
    """Why device `name` cannot train here, or None."""
    if name not in ("cuda", "mps"):
        return None
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        return "device 'cuda' was asked for, but no CUDA GPU is available here"
    mps = getattr(torch.backends, "mps", None)
    if name == "mps" and not (mps and mps.is_available()):
        return "device 'mps' was asked for, but no Apple GPU (MPS) is available here"
    return None

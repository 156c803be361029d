"""Parameter and compute counts, measured with torch's own counter (``torch.utils.flop_counter``).

torch counts a multiply-accumulate of a convolution or matrix product as 2 FLOPs; we report MACs = FLOPs / 2 and
FLOPs. Element-wise operations (activations, additions, upsampling, normalisation) are not counted, which is the
usual convention for these tables.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from dna_depth_core.models.registry import build_model


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def profile_model(name: str, height: int = 192, width: int = 640) -> dict:
    """``{"model", "params", "macs", "flops", "height", "width"}`` for one forward pass at batch 1."""
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise ValueError(f"--height/--width must be positive multiples of 32, got {height}x{width}")
    net = build_model(name).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, height, width))
    flops = int(counter.get_total_flops())
    return {"model": name, "params": count_parameters(net), "macs": flops // 2, "flops": flops,
            "height": height, "width": width}

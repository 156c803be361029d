"""dna_depth_core: the ROS-free core of dna-depth (networks, geometry, losses, training, evaluation, inference).

Public API::

    import dna_depth_core
    net = dna_depth_core.build_model("dna_b0", pretrained=None)   # nn.Module
    net = dna_depth_core.load_checkpoint("model.safetensors")      # weights loaded, eval mode
    disps = net(x)   # x (B, 3, H, W) in [0, 1], H, W multiples of 32 -> 4 sigmoid disparities, full res first

This package never imports ROS.
"""
from dna_depth_core.models.registry import build_model, list_models  # noqa: F401
from dna_depth_core.io.checkpoint import load_checkpoint, save_checkpoint  # noqa: F401

__version__ = "0.1.0"

"""Networks: encoders (timm), the DNA-Depth decoder, the Monodepth2 baseline decoder, the pose network, and a
registry that builds a depth network by name (``dna_b0``, ``dna_b1``, ``dna_lite0``, ``monodepth2_r18``)."""
from dna_depth_core.models.depth_net import DepthConfig, DepthNet  # noqa: F401
from dna_depth_core.models.registry import build_model, list_models, register_model  # noqa: F401

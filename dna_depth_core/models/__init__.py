"""Networks: encoders (timm), the DNA-Depth decoder, the Monodepth2 baseline decoder, the pose networks, and two
registries built alike: depth networks by name (``dna_b0``, ``dna_b1``, ``dna_lite0``, ``monodepth2_r18``;
models.registry) and pose networks by name (``resnet18``, ``lite0``, ``small``; models.pose)."""
from dna_depth_core.models.depth_net import DepthConfig, DepthNet  # noqa: F401
from dna_depth_core.models.pose import build_pose_model, list_pose_models, register_pose_model  # noqa: F401
from dna_depth_core.models.registry import build_model, list_models, register_model  # noqa: F401

"""QoS profiles of the node's subscriptions and publishers, from the ``qos.*`` parameters."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

__all__ = ["qos_profile"]


def qos_profile(reliability: str, depth: int, durability: str = "volatile") -> QoSProfile:
    """Keep-last ``depth``; ``reliability`` 'reliable' or 'best_effort'; ``durability`` 'volatile' or
    'transient_local'."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if durability == "transient_local" else DurabilityPolicy.VOLATILE,
    )

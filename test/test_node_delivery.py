"""Camera frames reach the node across processes: a reliable and a best-effort 10 Hz 1242x375 rgb8 camera each feed
a separate depth_node process for 20 s, and the node receives >= 95 % of the frames of each (issue 12's goal).

The node runs as ``ros2 launch`` would start it: its default QoS, the launch files' topic names
(``/camera/image_rect``, ``/camera/camera_info``) and the package's Fast DDS profile as
``FASTDDS_DEFAULT_PROFILES_FILE`` (config/fastdds/dna_depth_large_data.xml, or the file named by the
``DNA_DEPTH_DDS_PROFILE`` environment variable). Without a profile Fast DDS as installed loses most large frames
between processes (docs/ros.md, QoS), so the test skips, naming the missing file (under CI=true it fails).

The count of frames the node received comes from its own /diagnostics report (``received``), read before and after
each camera's 20 s; the camera's frames are counted by the tester. DDS domain 151, loopback only.
"""
import os
import time
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy

from dna_depth_ros.harness import Graph, NodeProcess

DOMAIN_ID = 151
REPO = Path(__file__).resolve().parents[1]
PROFILE = Path(os.environ.get("DNA_DEPTH_DDS_PROFILE") or REPO / "config" / "fastdds" / "dna_depth_large_data.xml")
SECONDS, RATE = 20.0, 10.0

pytestmark = pytest.mark.ros


def test_reliable_and_best_effort_cameras_deliver_95_percent(checkpoint, kitti):
    if not PROFILE.is_file():
        msg = f"no Fast DDS profile for the node at {PROFILE} (the transport findings)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    reports = []
    with Graph(domain_id=DOMAIN_ID) as graph, \
            NodeProcess(namespace="/deliv", params={"weights": checkpoint, "diagnostics.period": 0.5},
                        remaps={"image": "/camera/image_rect", "camera_info": "/camera/camera_info"},
                        domain_id=DOMAIN_ID, env={"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)}) as node:
        graph.tester.create_subscription(DiagnosticArray, "/diagnostics", lambda m: reports.extend(
            {v.key: v.value for v in s.values} for s in m.status if s.name.startswith("/deliv/dna_depth")), 10)
        graph.collect("/deliv/depth/image", keep=0,
                      qos=QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))

        def received():
            n = len(reports)
            graph.wait_for(lambda: len(reports) > n + 1, 30, "two more diagnostics reports")
            return int(reports[-1]["received"])

        results = {}
        for reliable in (True, False):
            camera = graph.camera(image_topic="/camera/image_rect", info_topic="/camera/camera_info",
                                  reliable=reliable)
            graph.wait_for(lambda: camera.image.get_subscription_count() >= 1 or not node.alive(), 180,
                           "the node process to subscribe")
            assert node.alive(), node.output
            time.sleep(2.0)  # discovery settles both ways
            before = received()
            t0 = time.monotonic()
            for i in range(int(SECONDS * RATE)):
                time.sleep(max(0.0, t0 + i / RATE - time.monotonic()))
                camera.send(kitti["frames"][i % 7], (5000 + int(reliable), i), info=kitti["info"], encoding="bgr8")
            time.sleep(2.0)  # the last frames in flight
            results["reliable" if reliable else "best_effort"] = (received() - before, len(camera.sent))
            camera.close()
        code, out = node.stop(timeout=60)
    assert code == 0, out
    for qos, (got, sent) in results.items():
        assert sent == SECONDS * RATE
        assert got >= 0.95 * sent, f"{qos} camera: the node received {got} of {sent} frames ({results})"

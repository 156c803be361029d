"""dna_depth_ros.conversions (and the core decoder / CameraInfo reader on rclpy messages): sensor_msgs <-> numpy,
checked against values built independently in the tests.

No ROS graph is started here (messages are plain Python objects), so no DDS traffic.
"""
import array
import os
import sys
import types

# No rclpy context is started here (messages are plain objects), so no domain of its own is needed.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from dna_depth_core import camera, ros_images  # noqa: E402
from dna_depth_core.visualize import colorize_depth  # noqa: E402
from dna_depth_ros import conversions as conv  # noqa: E402


@pytest.fixture
def header():
    return Header(stamp=Time(sec=1234, nanosec=567), frame_id="camera_optical_frame")


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _msg(pixels: np.ndarray, encoding: str, step: int | None = None, bigendian: bool = False, pad_value=0xAB):
    """An Image built by hand from an (H, W, C) array of the encoding's channel layout."""
    h, w = pixels.shape[:2]
    dt = pixels.dtype.newbyteorder(">" if bigendian else "<") if pixels.itemsize > 1 else pixels.dtype
    row = pixels.astype(dt).reshape(h, -1).view(np.uint8)
    step = row.shape[1] if step is None else step
    buf = np.full((h, step), pad_value, np.uint8)
    buf[:, :row.shape[1]] = row
    return Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=step,
                 data=array.array("B", buf.tobytes()))


# ----------------------------------------------------------------------------------------------------------------
# Image -> RGB
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding,layout", [
    ("rgb8", lambda c: c),
    ("bgr8", lambda c: c[..., ::-1]),
    ("rgba8", lambda c: np.concatenate([c, np.full(c.shape[:2] + (1,), 9, np.uint8)], 2)),
    ("bgra8", lambda c: np.concatenate([c[..., ::-1], np.full(c.shape[:2] + (1,), 9, np.uint8)], 2)),
])
def test_colour_encodings_give_rgb(rgb, encoding, layout):
    out = conv.image_to_rgb(_msg(layout(rgb), encoding))
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_mono8_is_replicated(rgb):
    grey = rgb[..., 1:2]
    out = conv.image_to_rgb(_msg(grey, "mono8"))
    np.testing.assert_array_equal(out, np.repeat(grey, 3, axis=2))


@pytest.mark.parametrize("bigendian", [False, True])
def test_16bit_encodings_keep_the_high_byte_in_either_byte_order(rgb, bigendian):
    wide = rgb.astype(np.uint16) * 256 + 77  # low byte is noise
    np.testing.assert_array_equal(conv.image_to_rgb(_msg(wide, "rgb16", bigendian=bigendian)), rgb)
    np.testing.assert_array_equal(conv.image_to_rgb(_msg(wide[..., ::-1], "bgr16", bigendian=bigendian)), rgb)
    mono = conv.image_to_rgb(_msg(wide[..., :1], "mono16", bigendian=bigendian))
    np.testing.assert_array_equal(mono, np.repeat(rgb[..., :1], 3, axis=2))


def test_row_padding_is_skipped(rgb):
    msg = _msg(rgb, "rgb8", step=7 * 3 + 5)
    np.testing.assert_array_equal(conv.image_to_rgb(msg), rgb)


def test_data_longer_than_needed_is_accepted(rgb):
    msg = _msg(rgb, "rgb8")
    msg.data = array.array("B", bytes(msg.data) + b"\x00" * 11)
    np.testing.assert_array_equal(conv.image_to_rgb(msg), rgb)


def test_unknown_encoding_is_named(rgb, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv_bridge", None)  # make sure no cv_bridge fallback is found
    msg = _msg(rgb, "rgb8")
    msg.encoding = "nv21_custom"
    with pytest.raises(conv.ConversionError, match=r"unsupported image encoding 'nv21_custom'.*rgb8"):
        conv.image_to_rgb(msg)


def test_empty_image_is_named():
    with pytest.raises(conv.ConversionError, match=r"empty image: 0x0"):
        conv.image_to_rgb(Image(height=0, width=0, encoding="rgb8", step=0))
    with pytest.raises(conv.ConversionError, match=r"empty image"):
        conv.image_to_rgb(Image(height=4, width=0, encoding="bgr8", step=0))


def test_wrong_step_is_named(rgb):
    msg = _msg(rgb, "rgb8")
    msg.step = 7 * 3 - 1
    with pytest.raises(conv.ConversionError, match=r"wrong step: 20 bytes per row.*needs 21"):
        conv.image_to_rgb(msg)


def test_truncated_data_is_named(rgb):
    msg = _msg(rgb, "rgb8")
    msg.data = msg.data[:-1]
    with pytest.raises(conv.ConversionError, match=r"truncated data: 104 bytes, but step 21 x height 5 needs 105"):
        conv.image_to_rgb(msg)


def test_cv_bridge_is_used_for_other_encodings_when_importable(rgb, monkeypatch):
    calls = []

    class FakeBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding):
            calls.append((msg.encoding, desired_encoding))
            if msg.encoding == "broken":
                raise RuntimeError("cannot convert")
            return rgb

    monkeypatch.setitem(sys.modules, "cv_bridge", types.SimpleNamespace(CvBridge=FakeBridge))
    monkeypatch.setattr(conv, "_cv_bridge", None)
    msg = _msg(rgb[..., :1], "mono8")
    msg.encoding = "nv12"  # an encoding the core decoder does not know
    np.testing.assert_array_equal(conv.image_to_rgb(msg), rgb)
    assert calls == [("nv12", "rgb8")]
    msg.encoding = "broken"
    with pytest.raises(conv.ConversionError, match=r"unsupported image encoding 'broken' \(cv_bridge: cannot"):
        conv.image_to_rgb(msg)
    # Known encodings never go through cv_bridge.
    conv.image_to_rgb(_msg(rgb, "rgb8"))
    assert len(calls) == 2


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_rgb_to_image_round_trip(rgb, header, encoding):
    msg = conv.rgb_to_image(rgb, header, encoding)
    assert (msg.encoding, msg.height, msg.width) == (encoding, 5, 7)
    assert msg.step == 7 * (4 if "a" in encoding else 3)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1234, 567, header.frame_id)
    np.testing.assert_array_equal(conv.image_to_rgb(msg), rgb)


# ----------------------------------------------------------------------------------------------------------------
# CompressedImage -> RGB
# ----------------------------------------------------------------------------------------------------------------
def _compressed(rgb, ext, fmt):
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return CompressedImage(format=fmt, data=array.array("B", buf.tobytes()))


def test_png_is_decoded_exactly(rgb):
    np.testing.assert_array_equal(conv.image_to_rgb(_compressed(rgb, ".png", "png")), rgb)


def test_jpeg_is_decoded_in_rgb_order():
    # Flat colour blocks survive JPEG almost exactly; a channel swap would not.
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :16] = (220, 30, 30)
    img[:, 16:] = (30, 30, 220)
    out = conv.image_to_rgb(_compressed(img, ".jpg", "rgb8; jpeg compressed bgr8"))
    assert out.shape == img.shape
    # Away from the colour edge (chroma is subsampled there).
    assert np.abs(out[:, :8].astype(int) - img[:, :8]).max() < 12
    assert np.abs(out[:, 24:].astype(int) - img[:, 24:]).max() < 12


def test_bad_compressed_images_are_named(rgb):
    jpg = _compressed(rgb, ".jpg", "jpeg")
    with pytest.raises(conv.ConversionError, match="empty CompressedImage data"):
        conv.image_to_rgb(CompressedImage(format="jpeg", data=array.array("B")))
    truncated = CompressedImage(format="jpeg", data=jpg.data[: len(jpg.data) // 2])
    with pytest.raises(conv.ConversionError, match="truncated JPEG"):
        conv.image_to_rgb(truncated)
    with pytest.raises(conv.ConversionError, match="neither JPEG nor PNG"):
        conv.image_to_rgb(CompressedImage(format="jpeg", data=array.array("B", b"not an image at all")))
    png = _compressed(rgb, ".png", "png")
    with pytest.raises(conv.ConversionError, match="could not decode"):
        conv.image_to_rgb(CompressedImage(format="png", data=png.data[:40]))
    with pytest.raises(conv.ConversionError, match="depth stream"):
        conv.image_to_rgb(CompressedImage(format="16UC1; compressedDepth png", data=png.data))


# ----------------------------------------------------------------------------------------------------------------
# Depth images
# ----------------------------------------------------------------------------------------------------------------
def test_depth_32fc1_is_metres_with_the_rep117_values(header):
    depth = np.array([[1.5, np.nan, -2.0, -np.inf], [0.0, np.inf, 70.25, 3.0]], np.float32)
    msg = conv.depth_to_image(depth, header, "32FC1")
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("32FC1", 2, 4, 16)
    assert msg.is_bigendian == (sys.byteorder == "big")
    raw = np.frombuffer(bytes(msg.data), dtype=np.float32).reshape(2, 4)
    # +inf (beyond range) and -inf (too near) pass through; NaN and <= 0 are NaN (no measurement).
    np.testing.assert_array_equal(raw, [[1.5, np.nan, np.nan, -np.inf], [np.nan, np.inf, 70.25, 3.0]])
    # The core's depth reader (ground truth from bags) takes only measured depth: the REP 117 values read as NaN.
    np.testing.assert_array_equal(ros_images.decode_depth(msg), np.where(np.isfinite(raw), raw, np.nan))


def test_depth_16uc1_is_millimetres_with_zero_invalid(header):
    depth = np.array([[1.2344, 1.2346, np.nan, np.inf], [-1.0, 65.535, 65.536, -np.inf]], np.float32)
    msg = conv.depth_to_image(depth, header, "16UC1")
    assert (msg.encoding, msg.step) == ("16UC1", 8)
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint16).reshape(2, 4)
    np.testing.assert_array_equal(raw, [[1234, 1235, 0, 0], [0, 65535, 0, 0]])
    back = ros_images.decode_depth(msg)
    np.testing.assert_allclose(back[0, :2], [1.234, 1.235])
    assert np.isnan(back[0, 2]) and np.isnan(back[1, 0]) and np.isnan(back[1, 2])


def test_big_endian_depth_is_read():
    values = np.array([[2.5, 7.0]], np.float32)
    msg = Image(height=1, width=2, encoding="32FC1", is_bigendian=1, step=8,
                data=array.array("B", values.astype(">f4").tobytes()))
    np.testing.assert_array_equal(ros_images.decode_depth(msg), values)


def test_bad_depth_encoding_is_named(header):
    with pytest.raises(ValueError, match="encoding"):
        conv.depth_to_image(np.ones((2, 2)), header, "8UC1")
    with pytest.raises(conv.ConversionError, match="unsupported depth encoding 'rgb8'"):
        ros_images.decode_depth(Image(height=1, width=1, encoding="rgb8", step=3, data=array.array("B", b"abc")))


# ----------------------------------------------------------------------------------------------------------------
# Camera info
# ----------------------------------------------------------------------------------------------------------------
def _info(K=None, P=None, w=640, h=480):
    msg = CameraInfo(width=w, height=h)
    if K is not None:
        msg.k = np.asarray(K, np.float64).reshape(-1)
    if P is not None:
        msg.p = np.asarray(P, np.float64).reshape(-1)
    return msg


K_RAW = np.array([[500.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])
P_RECT = np.array([[480.0, 0.0, 318.0, 12.0], [0.0, 480.0, 236.0, 0.0], [0.0, 0.0, 1.0, 0.0]])


def test_intrinsics_source():
    msg = _info(K_RAW, P_RECT)
    got = camera.camera_info_intrinsics(msg, "auto")
    np.testing.assert_array_equal(got.K, P_RECT[:, :3])
    assert got.size == (640, 480) and got.source == "P"
    np.testing.assert_array_equal(camera.camera_info_intrinsics(msg, "K").K, K_RAW)
    np.testing.assert_array_equal(camera.camera_info_intrinsics(_info(K_RAW), "auto").K, K_RAW)  # P unset
    with pytest.raises(camera.CameraInfoError, match="no valid intrinsics"):
        camera.camera_info_intrinsics(_info(), "auto")
    with pytest.raises(camera.CameraInfoError, match="no valid intrinsics"):
        camera.camera_info_intrinsics(_info(K_RAW), "P")


def test_roi_and_binning_follow_the_pixels():
    # A 3-D point projects to (u, v) in the full image. In a 2x-binned ROI starting at (x0, y0), binned pixel j
    # covers full pixels x0 + 2j and x0 + 2j + 1, so its centre is at u = x0 + 2j + 0.5.
    msg = _info(K_RAW, w=640, h=480)
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 100, 60, 320, 240
    msg.binning_x = msg.binning_y = 2
    got = camera.camera_info_intrinsics(msg)
    assert got.size == (160, 120)
    X = np.array([0.3, -0.2, 2.0])
    u, v = (K_RAW @ X)[:2] / X[2]
    j, i = (got.K @ X)[:2] / X[2]
    np.testing.assert_allclose([100 + 2 * j + 0.5, 60 + 2 * i + 0.5], [u, v], atol=1e-9)


def test_intrinsics_for_a_resized_image_follow_opencv_resize():
    # OpenCV maps destination pixel u' to source u = (u' + 0.5) / s - 0.5: check the scaled K projects a point to
    # the destination pixel that samples the source pixel the original K projects it to.
    intr = camera.camera_info_intrinsics(_info(K_RAW, w=640, h=480))
    K = intr.at((320, 120))
    X = np.array([0.7, 0.4, 3.0])
    u, v = (K_RAW @ X)[:2] / X[2]
    u2, v2 = (K @ X)[:2] / X[2]
    np.testing.assert_allclose([(u2 + 0.5) / 0.5 - 0.5, (v2 + 0.5) / 0.25 - 0.5], [u, v], atol=1e-9)
    np.testing.assert_array_equal(intr.at((640, 480)), K_RAW)
    unsized = camera.CameraIntrinsics(K=K_RAW, size=(0, 0), source="K")
    np.testing.assert_array_equal(unsized.at((320, 120)), K_RAW)


def test_make_camera_info(header):
    msg = conv.make_camera_info(K_RAW, 640, 480, header)
    assert (msg.width, msg.height, msg.distortion_model) == (640, 480, "plumb_bob")
    assert (msg.header.stamp.sec, msg.header.frame_id) == (1234, header.frame_id)
    np.testing.assert_array_equal(np.asarray(msg.k).reshape(3, 3), K_RAW)
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4)[:, :3], K_RAW)
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4)[:, 3], 0)
    np.testing.assert_array_equal(np.asarray(msg.r).reshape(3, 3), np.eye(3))
    assert list(msg.d) == [0.0] * 5
    np.testing.assert_array_equal(camera.camera_info_intrinsics(msg).K, K_RAW)


# ----------------------------------------------------------------------------------------------------------------
# Point clouds
# ----------------------------------------------------------------------------------------------------------------
def test_cloud_layout_and_round_trip(header, rgb):
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(5, 7, 3)).astype(np.float32)
    pts[2, 3] = np.nan
    msg = conv.points_to_cloud(pts, header)
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense) == (5, 7, 12, 84, False)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1)]
    assert msg.header.frame_id == header.frame_id and msg.header.stamp.nanosec == 567
    # Independent read of point (4, 6): bytes at row_step * 4 + point_step * 6.
    raw = bytes(msg.data)
    off = 84 * 4 + 12 * 6
    np.testing.assert_array_equal(np.frombuffer(raw[off:off + 12], dtype=np.float32), pts[4, 6])
    xyz, colours = conv.cloud_to_arrays(msg)
    np.testing.assert_array_equal(xyz, pts)
    assert colours is None


def test_cloud_rgb_uses_pcl_packing(header, rgb):
    pts = np.ones((5, 7, 3), np.float32)
    msg = conv.points_to_cloud(pts, header, rgb)
    assert msg.point_step == 16 and msg.row_step == 16 * 7
    assert [(f.name, f.offset) for f in msg.fields][-1] == ("rgb", 12)
    raw = bytes(msg.data)
    off = 16 * 7 * 3 + 16 * 2 + 12
    packed = int.from_bytes(raw[off:off + 4], sys.byteorder)
    r, g, b = (int(c) for c in rgb[3, 2])
    assert packed == (r << 16) | (g << 8) | b
    xyz, colours = conv.cloud_to_arrays(msg)
    np.testing.assert_array_equal(colours, rgb)
    np.testing.assert_array_equal(xyz, pts)


def test_cloud_shape_errors(header):
    with pytest.raises(ValueError, match=r"points must have shape \(H, W, 3\)"):
        conv.points_to_cloud(np.ones((4, 3)), header)
    with pytest.raises(ValueError, match="rgb must be"):
        conv.points_to_cloud(np.ones((2, 2, 3)), header, np.ones((3, 2, 3), np.uint8))


def test_point_list_cloud(header):
    pts = np.array([[1.0, 2.0, 3.0], [-0.5, 0.25, 8.0]], np.float32)
    msg = conv.point_list_to_cloud(pts, header)
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense) == (1, 2, 12, 24, True)
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.float32).reshape(2, 3), pts)
    xyz, _ = conv.cloud_to_arrays(msg)
    np.testing.assert_array_equal(xyz[0], pts)
    empty = conv.point_list_to_cloud(np.zeros((0, 3), np.float32), header)
    assert (empty.height, empty.width, len(empty.data), empty.is_dense) == (1, 0, 0, True)
    assert conv.cloud_to_arrays(empty)[0].shape == (1, 0, 3)
    assert not conv.point_list_to_cloud(np.array([[np.inf, 0.0, 1.0]]), header).is_dense
    with pytest.raises(ValueError, match=r"points must have shape \(N, 3\)"):
        conv.point_list_to_cloud(np.ones((2, 2, 3)), header)


def test_laser_scan_message(header):
    from dna_depth_core.inference import Scan

    ranges = np.array([np.nan, np.inf, 2.5, -np.inf, 7.75], np.float32)
    scan = Scan(angle_min=-0.4, angle_max=0.4, angle_increment=0.2, range_min=0.3, range_max=8.0, ranges=ranges)
    msg = conv.scan_to_laser_scan(scan, header, "camera_level")
    assert msg.header.frame_id == "camera_level" and msg.header.stamp.nanosec == 567
    assert (msg.angle_min, msg.angle_max, msg.range_min, msg.range_max) == pytest.approx((-0.4, 0.4, 0.3, 8.0))
    assert msg.angle_increment == pytest.approx(0.2) and msg.time_increment == 0.0 and msg.scan_time == 0.0
    # LaserScan's own rule: angle_max = angle_min + (len(ranges) - 1) * angle_increment.
    assert msg.angle_min + (len(msg.ranges) - 1) * msg.angle_increment == pytest.approx(msg.angle_max)
    np.testing.assert_array_equal(np.asarray(msg.ranges, np.float32), ranges)
    assert len(msg.intensities) == 0
    with pytest.raises(ValueError, match="frame_id of the scan is empty"):
        conv.scan_to_laser_scan(scan, header, "")


def test_scale_status(header):
    from diagnostic_msgs.msg import DiagnosticStatus

    from dna_depth_core.inference import ScaleState

    frozen = ScaleState(mode="camera_height", value=2.94412, metric=True, measured=21, rejected=2, failed=1,
                        converged=True, frozen=True, last_measurement=2.81, spread=0.07)
    status = conv.scale_status(frozen, hardware_id="cam0")
    assert status.level == DiagnosticStatus.OK and status.name == conv.SCALE_STATUS_NAME
    assert status.hardware_id == "cam0" and "frozen at 2.944" in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert values == {"mode": "camera_height", "value": "2.94412", "metric": "true", "converged": "true",
                      "frozen": "true", "withheld": "false", "measured": "21", "rejected": "2", "failed": "1",
                      "last_measurement": "2.81", "spread": "0.07"}
    waiting = ScaleState(mode="camera_height", value=1.0, metric=False, failed=3, withheld=True)
    status = conv.scale_status(waiting)
    assert status.level == DiagnosticStatus.WARN and "not metric" in status.message and "withheld" in status.message
    assert {kv.key: kv.value for kv in status.values}["last_measurement"] == ""
    assert conv.scale_status(ScaleState(mode="none", value=1.0, metric=False)).level == DiagnosticStatus.WARN
    array_msg = conv.scale_to_diagnostics(frozen, header)
    assert array_msg.header.stamp.sec == 1234 and len(array_msg.status) == 1


def test_colorize_depth():
    depth = np.array([[1.0, 2.0, 50.0, np.nan]], np.float32)
    out = colorize_depth(depth)
    assert out.shape == (1, 4, 3) and out.dtype == np.uint8
    assert (out[0, 3] == 0).all()                        # invalid: black
    assert out[0, 0, 0] > out[0, 0, 2]                   # near: red end of turbo
    assert out[0, 2, 2] > out[0, 2, 0]                   # far: blue end
    assert (colorize_depth(np.full((2, 2), np.nan)) == 0).all()

"""dna_depth_core.ros_images: the one decoder of sensor_msgs image payloads, on plain message objects (the node's
rclpy messages are covered in test_conversions.py, rosbags messages in test_rosbag.py)."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from dna_depth_core import ros_images as ri


def _image(px: np.ndarray, encoding: str, bigendian: bool = False):
    h, w = px.shape[:2]
    dt = px.dtype.newbyteorder(">" if bigendian else "<") if px.itemsize > 1 else px.dtype
    data = px.astype(dt).tobytes()
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=len(data) // h,
                           data=data)


def _compressed(rgb, ext, fmt="jpeg", params=()):
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params))
    assert ok
    return SimpleNamespace(format=fmt, data=buf.tobytes())


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (64, 48), interpolation=cv2.INTER_CUBIC)


def test_bayer_and_yuv_match_opencv(rgb):
    raw = rgb[..., 1].copy()
    np.testing.assert_array_equal(ri.decode_image(_image(raw, "bayer_rggb8")),
                                  cv2.cvtColor(raw, cv2.COLOR_BayerBG2RGB))
    uyvy = np.random.default_rng(1).integers(0, 256, (48, 64, 2), dtype=np.uint8)
    np.testing.assert_array_equal(ri.decode_image(_image(uyvy, "yuv422")), cv2.cvtColor(uyvy, cv2.COLOR_YUV2RGB_UYVY))


def test_16_bit_keeps_the_high_byte(rgb):
    wide = rgb.astype(np.uint16) * 257
    np.testing.assert_array_equal(ri.decode_image(_image(wide, "rgb16", bigendian=True)), rgb)


def test_max_pixels_reduces_raw_images_before_converting(rgb):
    bgr = rgb[..., ::-1].copy()
    out = ri.decode_image(_image(bgr, "bgr8"), max_pixels=16 * 12)  # 64x48 -> factor 4 -> 16x12
    assert out.shape == (12, 16, 3)
    np.testing.assert_array_equal(out, cv2.resize(rgb, (16, 12), interpolation=cv2.INTER_AREA))
    assert ri.decode_image(_image(bgr, "bgr8"), max_pixels=64 * 48).shape == (48, 64, 3)


def test_reduction_factor():
    assert ri.reduction_for(8000, 6000, 3840 * 2160) == 3  # 2666x2000 = 5.3 Mpx
    assert ri.reduction_for(3840, 2160, 3840 * 2160) == 1
    assert ri.reduction_for(101, 99, None) == 1
    for w, h, m in ((8000, 6000, 1000), (1243, 377, 5000), (7, 5, 1)):
        f = ri.reduction_for(w, h, m)
        assert (w // f) * (h // f) <= m and (f == 1 or (w // (f - 1)) * (h // (f - 1)) > m)


@pytest.mark.parametrize("ext,kind", [(".png", "png"), (".jpg", "jpeg")])
def test_compressed_size_is_read_from_the_header(rgb, ext, kind):
    msg = _compressed(rgb, ext)
    assert ri.compressed_image_size(msg.data) == (kind, 64, 48)


def test_progressive_jpeg_size_is_read(rgb):
    msg = _compressed(rgb, ".jpg", params=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
    assert ri.compressed_image_size(msg.data) == ("jpeg", 64, 48)


def test_a_decompression_bomb_is_decoded_small():
    # 8000x6000 of zeros is a small PNG and JPEG; decoded under a 1 Mpx budget it must come out reduced.
    big = np.zeros((6000, 8000, 3), np.uint8)
    for ext in (".jpg", ".png"):
        msg = _compressed(big, ext)
        assert len(msg.data) < 2_000_000
        out = ri.decode_compressed(msg, max_pixels=1_000_000)
        f = ri.reduction_for(8000, 6000, 1_000_000)
        assert out.shape[0] * out.shape[1] <= 1_000_000 and out.shape[:2] == (6000 // f, 8000 // f)


def test_bad_headers_are_named(rgb):
    with pytest.raises(ri.ConversionError, match="neither JPEG nor PNG"):
        ri.compressed_image_size(b"GIF89a......")
    png = _compressed(rgb, ".png").data
    with pytest.raises(ri.ConversionError, match="PNG header cut short"):
        ri.compressed_image_size(png[:20])
    jpg = _compressed(rgb, ".jpg").data
    with pytest.raises(ri.ConversionError, match="JPEG header"):
        ri.compressed_image_size(jpg[:30])
    with pytest.raises(ri.ConversionError, match="empty"):
        ri.decode_compressed(SimpleNamespace(format="jpeg", data=b""))


def test_decode_tells_image_and_compressed_apart(rgb):
    np.testing.assert_array_equal(ri.decode(_image(rgb, "rgb8")), rgb)
    np.testing.assert_array_equal(ri.decode(_compressed(rgb, ".png", "png")), rgb)


def test_depth_is_metres_with_nan_invalid():
    d = np.array([[1.5, -1.0], [0.0, np.inf]], np.float32)
    out = ri.decode_depth(_image(d, "32FC1"))
    np.testing.assert_array_equal(out, [[1.5, np.nan], [np.nan, np.nan]])
    mm = np.array([[1500, 0]], np.uint16)
    np.testing.assert_array_equal(ri.decode_depth(_image(mm, "16UC1", bigendian=True)), [[1.5, np.nan]])

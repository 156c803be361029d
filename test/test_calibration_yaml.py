"""Calibration YAML files (dna_depth_core.camera.intrinsics_from_yaml): read with the CameraInfo rule (P when
valid, else K; the same plausibility checks); every malformed file named in one error."""
from __future__ import annotations

import numpy as np
import pytest

from dna_depth_core.camera import CameraInfoError, intrinsics_from_yaml

# What cameracalibrator writes (camera_calibration_parsers' YAML), with a rectified P that differs from K.
CAMERA_CALIBRATION = """\
image_width: 640
image_height: 480
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [500.0, 0.0, 319.5, 0.0, 502.0, 239.5, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.2, 0.05, 0.001, 0.0, 0.0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
projection_matrix:
  rows: 3
  cols: 4
  data: [480.0, 0.0, 322.0, 0.0, 0.0, 481.0, 241.0, 0.0, 0.0, 0.0, 1.0, 0.0]
"""


def write(tmp_path, text: str, name: str = "cam.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_camera_calibration_format_P_first_like_camera_info(tmp_path):
    path = write(tmp_path, CAMERA_CALIBRATION)
    ci = intrinsics_from_yaml(path)
    assert ci.source == "P" and ci.size == (640, 480)
    np.testing.assert_array_equal(ci.K, [[480.0, 0, 322.0], [0, 481.0, 241.0], [0, 0, 1]])
    k = intrinsics_from_yaml(path, source="K")
    assert k.source == "K"
    np.testing.assert_array_equal(k.K, [[500.0, 0, 319.5], [0, 502.0, 239.5], [0, 0, 1]])
    np.testing.assert_allclose(k.at((320, 240)), [[250.0, 0, 159.5], [0, 251.0, 119.5], [0, 0, 1]])


def test_flat_formats(tmp_path):
    flat = intrinsics_from_yaml(write(tmp_path, "width: 96\nheight: 32\nK: [50, 0, 47.5, 0, 51, 15.5, 0, 0, 1]\n"))
    assert flat.size == (96, 32) and flat.source == "P"  # P defaults to [K | 0]
    np.testing.assert_array_equal(flat.K, [[50, 0, 47.5], [0, 51, 15.5], [0, 0, 1]])
    scalars = intrinsics_from_yaml(write(tmp_path, "width: 96\nheight: 32\nfx: 50\nfy: 51\ncx: 47.5\ncy: 15.5\n",
                                         "scalars.yaml"))
    np.testing.assert_array_equal(scalars.K, flat.K)


@pytest.mark.parametrize("text, message", [
    ("just text", "expected a mapping"),
    ("image_width: 640\ncamera_matrix: {data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}\n", "image_height"),
    ("width: 96\nheight: 32\nfx: 50\n", "needs camera_matrix"),
    ("width: 96\nheight: 32\nK: [50, 0, 47.5, 0, 51, 15.5]\n", "K must hold 9 numbers, got 6"),
    ("width: 96\nheight: 32\nK: [a, 0, 47.5, 0, 51, 15.5, 0, 0, 1]\n", "K must be a list of numbers"),
    ("width: 96\nheight: [32\n", "not a YAML file"),
])
def test_malformed_files_are_named(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as ei:
        intrinsics_from_yaml(path)
    assert str(path) in str(ei.value)


def test_implausible_intrinsics_name_the_file_and_field(tmp_path):
    # a normalised matrix (fx = 0.6) saved as if it were pixels
    path = write(tmp_path, "width: 640\nheight: 480\nK: [0.6, 0, 0.5, 0, 0.8, 0.5, 0, 0, 1]\n")
    with pytest.raises(CameraInfoError) as ei:
        intrinsics_from_yaml(path)
    assert {p.key for p in ei.value.problems} >= {"camera_info.fx", "camera_info.fy"}
    assert all(str(path) in p.message for p in ei.value.problems)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        intrinsics_from_yaml(tmp_path / "missing.yaml")

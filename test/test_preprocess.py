"""dna_depth_core.preprocess: the one image -> network-input rule, against OpenCV calls written out by hand."""
import cv2
import numpy as np
import pytest

from dna_depth_core import camera, preprocess


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return cv2.resize(rng.integers(0, 256, (30, 90, 3), dtype=np.uint8), (450, 150), interpolation=cv2.INTER_CUBIC)


def test_shrinking_uses_area_averaging(image):
    out = preprocess.resize_image(image, (90, 30))  # exactly 5x: each output pixel is a 5x5 block mean
    blocks = image.reshape(30, 5, 90, 5, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(out.astype(np.float64) - blocks).max() <= 0.5 + 1e-9
    np.testing.assert_array_equal(out, cv2.resize(image, (90, 30), interpolation=cv2.INTER_AREA))


def test_growing_uses_bilinear(image):
    np.testing.assert_array_equal(preprocess.resize_image(image, (900, 300)),
                                  cv2.resize(image, (900, 300), interpolation=cv2.INTER_LINEAR))


def test_mixed_resizes_one_axis_after_the_other(image):
    out = preprocess.resize_image(image, (90, 300))  # width shrinks 5x, height grows 2x
    expected = cv2.resize(cv2.resize(image, (90, 150), interpolation=cv2.INTER_AREA), (90, 300),
                          interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out, expected)
    out = preprocess.resize_image(image, (900, 30))  # width grows, height shrinks
    expected = cv2.resize(cv2.resize(image, (900, 150), interpolation=cv2.INTER_LINEAR), (900, 30),
                          interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out, expected)


def test_same_size_is_untouched(image):
    assert preprocess.resize_image(image, (450, 150)) is image


def test_values_are_value_over_255_channels_first():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    img[..., 1] = 255 - img[..., 0]
    x = preprocess.to_chw(img)
    assert x.shape == (3, 16, 16) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x[0].reshape(-1), np.arange(256, dtype=np.float32) / np.float32(255))
    np.testing.assert_array_equal(x[1], (255 - img[..., 0]).astype(np.float32) / np.float32(255))
    assert x.min() == 0.0 and x.max() == 1.0


def test_grey_images_are_replicated_and_bad_ones_named():
    grey = np.full((4, 5), 7, np.uint8)
    assert preprocess.as_rgb(grey).shape == (4, 5, 3) and (preprocess.as_rgb(grey) == 7).all()
    with pytest.raises(ValueError, match="uint8"):
        preprocess.as_rgb(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        preprocess.as_rgb(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="resize mode 'zoom'"):
        preprocess.crop_box((640, 480), (224, 64), "zoom")


def test_prepare_stretch_and_crop_with_intrinsics(image):
    K = np.array([[300.0, 0, 224.5], [0, 300, 74.5], [0, 0, 1]])
    x, K_net, box = preprocess.prepare(image, (96, 32), "stretch", K)
    assert box == (0, 0, 450, 150) and x.shape == (1, 3, 32, 96)
    np.testing.assert_array_equal(x[0], preprocess.to_chw(cv2.resize(image, (96, 32), interpolation=cv2.INTER_AREA)))
    np.testing.assert_array_equal(K_net, camera.resize_K(K, (450, 150), (96, 32)))
    x, K_net, box = preprocess.prepare(image, (64, 32), "crop", K)  # aspect 2: crop the width to 300
    assert box == (75, 0, 300, 150)
    np.testing.assert_array_equal(x[0], preprocess.to_chw(cv2.resize(image[:, 75:375], (64, 32),
                                                                      interpolation=cv2.INTER_AREA)))
    np.testing.assert_array_equal(K_net, camera.resize_K(camera.crop_K(K, 75, 0), (300, 150), (64, 32)))
    assert preprocess.prepare(image, (64, 32))[1] is None


def test_load_image_converts_bgr_and_names_missing_files(tmp_path, image):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), image[..., ::-1])  # OpenCV writes BGR: store the RGB image's channels reversed
    np.testing.assert_array_equal(preprocess.load_image(path), image)
    with pytest.raises(FileNotFoundError, match="b.png"):
        preprocess.load_image(tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(b"not an image")
    with pytest.raises(FileNotFoundError, match="unreadable"):
        preprocess.load_image(tmp_path / "c.png")

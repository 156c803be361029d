"""dna_depth_core.inference.ranges and .ground: REP 117 values, clearing rays, height above the ground, obstacle and
ground points, the laser scan. Scenes are depth maps built by ray-plane intersection here (exact), and the synthetic
street's exact depth; expected values are computed from the scene's geometry, not from the code under test."""
import math

import numpy as np
import pytest

from dna_depth_core import inference as inf
from dna_depth_core.data.synthetic import synthetic_drive, synthetic_intrinsics

W, H, F = 160, 120, 100.0
K = np.array([[F, 0.0, (W - 1) / 2], [0.0, F, (H - 1) / 2], [0.0, 0.0, 1.0]])


def _rig(pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Camera-to-level-world rotation of a camera pitched down by ``pitch_deg`` after a roll of ``roll_deg`` about
    its optical axis. World axes: x right, y down, z forward (the optical axes of the level camera)."""
    p, r = math.radians(pitch_deg), math.radians(roll_deg)
    rot_x = np.array([[1, 0, 0], [0, math.cos(-p), -math.sin(-p)], [0, math.sin(-p), math.cos(-p)]])
    rot_z = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rot_x @ rot_z


def _camera_rays() -> np.ndarray:
    """(H, W, 3) rays with z = 1 from the pinhole model, written out (not through the code under test)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)


def _scene(height=1.2, pitch_deg=0.0, roll_deg=0.0, wall=None, sky=np.nan):
    """Exact camera-z depth (H, W) of a floor ``height`` m below the camera and optionally a wall segment facing
    the camera: ``wall = (distance, x_left, x_right, top)`` in the level world (front face at z = distance,
    x_left <= x <= x_right, from the floor up to ``top`` m above it). Pixels that hit nothing get ``sky``.

    Returns ``(depth, hit)`` with ``hit`` 0 = sky, 1 = floor, 2 = wall, and the world points (H, W, 3)."""
    R = _rig(pitch_deg, roll_deg)
    d = _camera_rays() @ R.T  # world directions of the rays (camera z = 1 along each ray's parameter)
    t = np.full((H, W), np.inf)
    hit = np.zeros((H, W), int)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(d[..., 1] > 0, height / d[..., 1], np.inf)
    t, hit = np.where(t_floor < t, t_floor, t), np.where(t_floor < t, 1, hit)
    if wall is not None:
        dist, x0, x1, top = wall
        with np.errstate(divide="ignore", invalid="ignore"):
            t_wall = np.where(d[..., 2] > 0, dist / d[..., 2], np.inf)
        p = d * t_wall[..., None]
        inside = (p[..., 0] >= x0) & (p[..., 0] <= x1) & (height - p[..., 1] >= 0) & (height - p[..., 1] <= top)
        t_wall = np.where(inside, t_wall, np.inf)
        t, hit = np.where(t_wall < t, t_wall, t), np.where(t_wall < t, 2, hit)
    depth = np.where(np.isfinite(t), t, sky).astype(np.float32)
    world = d * np.where(np.isfinite(t), t, np.nan)[..., None]
    return depth, hit, world


@pytest.fixture(scope="module")
def rays():
    return inf.PixelRays(K, H, W)


# ----------------------------------------------------------------------------------------------------------------
# REP 117
# ----------------------------------------------------------------------------------------------------------------
def test_rep117_depth_values():
    depth = np.array([[np.nan, -1.0, 0.0, 0.3, 0.5, 1.0, 8.0, 9.0, np.inf, -np.inf]], np.float32)
    before = depth.copy()
    out = inf.rep117_depth(depth, min_range=0.5, max_range=8.0)
    expected = np.array([[np.nan, np.nan, np.nan, -np.inf, 0.5, 1.0, 8.0, np.inf, np.inf, np.nan]], np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(depth, before)  # the input is left alone
    # No limits: only the missing measurements change.
    np.testing.assert_array_equal(inf.rep117_depth(depth),
                                  np.array([[np.nan, np.nan, np.nan, 0.3, 0.5, 1.0, 8.0, 9.0, np.inf, np.nan]], np.float32))
    with pytest.raises(ValueError, match="min_range .* must be smaller than max_range"):
        inf.rep117_depth(depth, 8.0, 8.0)
    with pytest.raises(ValueError, match="max_range must be a finite number >= 0"):
        inf.rep117_depth(depth, 0.0, -1.0)
    with pytest.raises(ValueError, match=r"depth must be a non-empty \(H, W\) array"):
        inf.rep117_depth(np.zeros(5))


def test_cloud_points_rep117_along_each_ray():
    # 3 x 3 pixels, centre (1, 1) on the optical axis: its ray is (0, 0, 1).
    Ks = np.array([[2.0, 0.0, 1.0], [0.0, 4.0, 1.0], [0.0, 0.0, 1.0]])
    rays = inf.PixelRays(Ks, 3, 3)
    depth = np.array([[2.0, 20.0, np.nan],
                      [0.0, 20.0, 0.1],
                      [np.inf, 3.0, 0.1]], np.float32)
    pts = inf.cloud_points(depth, rays, min_range=0.5, max_range=10.0)
    # Valid and within range: depth times the ray ((u - cx) / fx, (v - cy) / fy, 1).
    np.testing.assert_allclose(pts[0, 0], [2.0 * -0.5, 2.0 * -0.25, 2.0])
    np.testing.assert_allclose(pts[2, 1], [0.0, 3.0 * 0.25, 3.0])
    # Beyond the maximum: +inf along the ray, 0 where the ray's component is 0 (never NaN).
    np.testing.assert_array_equal(pts[0, 1], [0.0, -np.inf, np.inf])
    np.testing.assert_array_equal(pts[1, 1], [0.0, 0.0, np.inf])
    np.testing.assert_array_equal(pts[2, 0], [-np.inf, np.inf, np.inf])
    # Nearer than the minimum: -inf along the ray.
    np.testing.assert_array_equal(pts[1, 2], [-np.inf, 0.0, -np.inf])
    np.testing.assert_array_equal(pts[2, 2], [-np.inf, -np.inf, -np.inf])
    # No measurement: NaN.
    assert np.isnan(pts[0, 2]).all() and np.isnan(pts[1, 0]).all()
    # The range is Euclidean: a corner ray is longer than its depth.
    corner = inf.cloud_points(np.full((3, 3), 9.5, np.float32), rays, max_range=10.0)
    assert np.isinf(corner[0, 0]).all() and np.isfinite(corner[1, 1]).all()  # |(-0.5, -0.25, 1)| * 9.5 > 10


def test_clearing_rays_have_the_direction_of_their_pixel_and_the_clearing_length(rays):
    """A floor 1.2 m below a level camera, the sky (the network's far depth, 80 m) above the horizon: pixels whose
    floor hit is farther than 8 m, and the sky, become points 8.5 m along their own rays."""
    depth, hit, world = _scene(height=1.2, sky=80.0)
    pts = inf.cloud_points(depth, rays, max_range=8.0, far="clearing", clearing_distance=8.5)
    true_range = np.linalg.norm(world, axis=2)
    far = (hit == 0) | (true_range > 8.0)
    assert far.sum() > W * H / 3 and (~far).sum() > W * 10  # both kinds are well represented
    # Direction: the pixel's ray from the pinhole model; length: the clearing distance.
    expected_dir = _camera_rays() / np.linalg.norm(_camera_rays(), axis=2, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(pts[far], axis=1), 8.5, rtol=1e-6)
    np.testing.assert_allclose(pts[far] / 8.5, expected_dir[far], atol=1e-6)
    # Within range: the exact floor point.
    np.testing.assert_allclose(pts[~far], world[~far], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pts[~far][:, 1], 1.2, atol=1e-4)
    # The same scene in REP 117 mode: the far pixels are +inf, nothing else is.
    rep = inf.cloud_points(depth, rays, max_range=8.0)
    assert np.isposinf(rep[far][:, 2]).all() and np.isfinite(rep[~far]).all()
    with pytest.raises(ValueError, match="clearing_distance must be a positive"):
        inf.cloud_points(depth, rays, max_range=8.0, far="clearing")
    with pytest.raises(ValueError, match="far 'sky' unknown"):
        inf.cloud_points(depth, rays, far="sky")
    with pytest.raises(ValueError, match="rays are for 120 x 160 pixels"):
        inf.cloud_points(depth[:10], rays)


def test_pixel_rays_match_the_pinhole_model(rays):
    np.testing.assert_allclose(rays.xyz, _camera_rays(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rays.norm, np.linalg.norm(_camera_rays(), axis=2), rtol=1e-6)
    assert rays.matches(K, H, W) and not rays.matches(K, H, W + 1) and not rays.matches(K * 1.01, H, W)


# ----------------------------------------------------------------------------------------------------------------
# The ground plane
# ----------------------------------------------------------------------------------------------------------------
def test_mounting_plane_geometry():
    level = inf.mounting_plane(1.5)
    np.testing.assert_allclose(level.normal, [0.0, 1.0, 0.0])
    # Pitched down by 10 degrees, the optical axis meets the ground at height / sin(10 deg).
    pitched = inf.mounting_plane(1.5, pitch_deg=10.0)
    axis_hit = np.array([0.0, 0.0, 1.5 / math.sin(math.radians(10.0))])
    assert pitched.heights(axis_hit) == pytest.approx(0.0, abs=1e-12)
    assert pitched.heights(np.zeros(3)) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="camera_height must be a positive"):
        inf.mounting_plane(0.0)
    with pytest.raises(ValueError, match=r"pitch_deg must be in \(-90, 90\)"):
        inf.mounting_plane(1.0, pitch_deg=90.0)
    with pytest.raises(ValueError, match="normal must be a unit 3-vector"):
        inf.GroundPlane(np.array([0.0, 2.0, 0.0]), 1.0)


def test_mounting_plane_matches_the_synthetic_rig():
    """The synthetic street's road is exactly 1.25 m below a camera pitched 6 deg and rolled 3 deg: the heights of
    the road pixels above the mounting plane are 0."""
    drive = synthetic_drive(3, seed=5, camera_height=1.25, pitch_deg=6.0, roll_deg=3.0)
    Ks = synthetic_intrinsics(320, 96)
    _, depth = drive.scene.render(drive.poses[1], Ks, 320, 96, ss=1)
    plane = inf.mounting_plane(1.25, pitch_deg=6.0, roll_deg=3.0)
    heights = inf.height_above_ground(np.where(depth > 0, depth, np.nan), inf.PixelRays(Ks, 96, 320), plane)
    road = heights[-12:, 120:200]  # the lane ahead of the car
    assert np.isfinite(road).all()
    np.testing.assert_allclose(road, 0.0, atol=2e-3)
    # The wrong roll sign would tilt the road by 6 deg across the image: heights of several centimetres.
    wrong = inf.height_above_ground(np.where(depth > 0, depth, np.nan), inf.PixelRays(Ks, 96, 320),
                                    inf.mounting_plane(1.25, pitch_deg=6.0, roll_deg=-3.0))
    assert np.abs(wrong[-12:, 120:200]).max() > 0.05


def test_levelled_rotation_axes():
    R = inf.levelled_rotation([0.0, 1.0, 0.0])  # level camera: forward = optical z, left = -x, up = -y
    np.testing.assert_allclose(R, [[0, -1, 0], [0, 0, -1], [1, 0, 0]], atol=1e-12)
    plane = inf.mounting_plane(1.0, pitch_deg=20.0, roll_deg=5.0)
    R = inf.levelled_rotation(plane.normal)
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(R[:, 2], -plane.normal, atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    # Expressed in the level world (camera-to-world rig), the levelled frame is the world's forward/left/up.
    world = _rig(20.0, 5.0) @ R
    np.testing.assert_allclose(world, [[0, -1, 0], [0, 0, -1], [1, 0, 0]], atol=1e-12)
    with pytest.raises(ValueError, match="no forward direction"):
        inf.levelled_rotation([0.0, 0.0, 1.0])


@pytest.mark.parametrize("pitch_deg, roll_deg", [(0.0, 0.0), (8.0, 3.0)])
def test_flat_floor_has_no_obstacles_and_a_free_scan(rays, pitch_deg, roll_deg):
    depth, hit, _ = _scene(height=1.2, pitch_deg=pitch_deg, roll_deg=roll_deg)
    plane = inf.mounting_plane(1.2, pitch_deg, roll_deg)
    heights = inf.height_above_ground(depth, rays, plane)[hit == 1]
    assert (np.abs(heights) <= 1e-4 + 1e-6 * depth[hit == 1]).all()  # float32: far floor points lose digits
    obstacles, ground = inf.split_ground(depth, rays, plane, band=(0.1, 2.0))
    assert obstacles.shape == (0, 3)
    assert len(ground) == (hit == 1).sum()
    scan = inf.laser_scan(depth, rays, plane, band=(0.1, 2.0), range_min=0.3, range_max=8.0)
    assert np.isposinf(scan.ranges).all()


WALL = (5.0, -1.0, 0.5, 2.5)  # front face 5 m ahead, from 1 m left to 0.5 m right, 2.5 m tall


@pytest.mark.parametrize("pitch_deg, roll_deg", [(0.0, 0.0), (8.0, 3.0)])
def test_wall_gives_obstacle_points_and_scan_ranges(rays, pitch_deg, roll_deg):
    depth, hit, world = _scene(height=1.2, pitch_deg=pitch_deg, roll_deg=roll_deg, wall=WALL)
    dist, x0, x1, top = WALL
    plane = inf.mounting_plane(1.2, pitch_deg, roll_deg)
    obstacles, ground = inf.split_ground(depth, rays, plane, band=(0.1, 2.0))
    wall_height = 1.2 - world[..., 1]
    in_band = (hit == 2) & (wall_height >= 0.1) & (wall_height <= 2.0)
    # Obstacles: exactly the wall's pixels within the band (a 1e-4 m margin for float32 at the band's edges).
    edge = (hit == 2) & ((np.abs(wall_height - 0.1) < 1e-4) | (np.abs(wall_height - 2.0) < 1e-4))
    assert abs(len(obstacles) - in_band.sum()) <= edge.sum()
    assert in_band.sum() > 500
    obstacles_world = obstacles.astype(np.float64) @ _rig(pitch_deg, roll_deg).T
    np.testing.assert_allclose(obstacles_world[:, 2], dist, rtol=1e-5)
    assert (obstacles_world[:, 0] >= x0 - 1e-4).all() and (obstacles_world[:, 0] <= x1 + 1e-4).all()
    # Ground: the floor and the wall's foot within 0.1 m of the floor.
    foot = (hit == 2) & (wall_height < 0.1)
    assert abs(len(ground) - ((hit == 1).sum() + foot.sum())) <= edge.sum()

    scan = inf.laser_scan(depth, rays, plane, band=(0.1, 2.0), range_min=0.3, range_max=8.0)
    bearings = scan.angle_min + scan.angle_increment * np.arange(len(scan.ranges))
    assert bearings[-1] == pytest.approx(scan.angle_max)
    # Bearings are counter-clockwise from forward: the wall spans atan2(-x1, d) .. atan2(-x0, d).
    lo, hi = math.atan2(-x1, dist), math.atan2(-x0, dist)
    inside = (bearings > lo + scan.angle_increment) & (bearings < hi - scan.angle_increment)
    outside = (bearings < lo - scan.angle_increment) | (bearings > hi + scan.angle_increment)
    assert inside.sum() > 20 and outside.sum() > 20
    np.testing.assert_allclose(scan.ranges[inside], dist / np.cos(bearings[inside]), rtol=0.02)
    assert np.isposinf(scan.ranges[outside]).all()
    # Beyond range_max the wall is free space; nearer than range_min it is -inf.
    far = inf.laser_scan(depth, rays, plane, band=(0.1, 2.0), range_min=0.3, range_max=4.0)
    assert np.isposinf(far.ranges).all()
    near = inf.laser_scan(depth, rays, plane, band=(0.1, 2.0), range_min=6.0, range_max=8.0)
    assert np.isneginf(near.ranges[inside]).all() and np.isposinf(near.ranges[outside]).all()


def test_scan_limits_from_the_intrinsics(rays):
    level = inf.laser_scan(np.full((H, W), 3.0, np.float32), rays, inf.mounting_plane(1.0), (0.1, 2.0), 0.1, 8.0)
    assert level.angle_max == pytest.approx(math.atan((K[0, 2] + 0.5) / F))
    assert level.angle_min == pytest.approx(-math.atan((W - 0.5 - K[0, 2]) / F))
    # One beam per pixel width at the image centre.
    centre = 2 * math.atan(0.5 / F)
    beams = round((level.angle_max - level.angle_min) / centre) + 1
    assert len(level.ranges) == beams
    assert level.angle_increment == pytest.approx((level.angle_max - level.angle_min) / (beams - 1))
    assert level.angle_increment == pytest.approx(centre, rel=0.01)
    # The depth is a fronto-parallel wall 3 m ahead: at bearing b its horizontal range is 3 / cos(b).
    bearings = level.angle_min + level.angle_increment * np.arange(beams)
    np.testing.assert_allclose(level.ranges, 3.0 / np.cos(bearings), rtol=0.01)
    # Pitched down, the image borders' lower rows look wider in the level plane.
    pitched = inf.scan_limits(rays, inf.levelled_rotation(inf.mounting_plane(1.0, 15.0).normal))
    assert pitched[1] > level.angle_max and pitched[0] < level.angle_min
    coarse = inf.laser_scan(np.full((H, W), 3.0, np.float32), rays, inf.mounting_plane(1.0), (0.1, 2.0), 0.1, 8.0,
                            beams=40)
    assert len(coarse.ranges) == 40


def test_scan_marks_unobserved_beams_nan(rays):
    depth, _, _ = _scene(height=1.2, wall=WALL)
    depth[:, :40] = np.nan  # the left quarter of the image has no measurement (e.g. outside a crop)
    scan = inf.laser_scan(depth, rays, inf.mounting_plane(1.2), band=(0.1, 2.0), range_min=0.3, range_max=8.0)
    bearings = scan.angle_min + scan.angle_increment * np.arange(len(scan.ranges))
    # Column u < 40 has bearing atan((cx - u) / f) > atan((cx - 39.5) / f).
    unseen = bearings > math.atan((K[0, 2] - 39.5) / F) + scan.angle_increment
    assert unseen.sum() > 25 and np.isnan(scan.ranges[unseen]).all()
    assert not np.isnan(scan.ranges[bearings < math.atan((K[0, 2] - 40.5) / F)]).any()


def test_ground_outputs_from_the_fitted_plane(rays):
    """camera_height mode: the plane fitted on relative depth (the scene / 2.5) by the scale tracker, in metres,
    gives the same obstacles and scan as the true mounting plane."""
    pitch, roll = 8.0, 3.0
    depth, hit, world = _scene(height=1.2, pitch_deg=pitch, roll_deg=roll, wall=WALL)
    tracker = inf.ScaleTracker("camera_height", camera_height=1.2)
    state = tracker.update(depth / 2.5, K)
    assert state.metric and state.value == pytest.approx(2.5, rel=1e-3)
    plane = tracker.plane
    assert plane.source == "fit"
    truth = inf.mounting_plane(1.2, pitch, roll)
    np.testing.assert_allclose(plane.normal, truth.normal, atol=1e-3)
    assert plane.height == pytest.approx(1.2, rel=1e-3)
    metric = depth / 2.5 * np.float32(state.value)
    scan = inf.laser_scan(metric, rays, plane, band=(0.1, 2.0), range_min=0.3, range_max=8.0)
    ref = inf.laser_scan(depth, rays, truth, band=(0.1, 2.0), range_min=0.3, range_max=8.0)
    finite = np.isfinite(ref.ranges)
    assert finite.sum() > 20
    np.testing.assert_array_equal(np.isfinite(scan.ranges), finite)
    np.testing.assert_allclose(scan.ranges[finite], ref.ranges[finite], rtol=0.02)
    # A frame whose fit fails keeps the last fitted normal at the mounting height.
    tracker.update(np.full((H, W), 5.0, np.float32), K)
    assert tracker.plane.source == "last_fit" and tracker.plane.height == 1.2
    np.testing.assert_allclose(tracker.plane.normal, plane.normal)


def test_ground_arguments_are_checked(rays):
    depth = np.full((H, W), 3.0, np.float32)
    plane = inf.mounting_plane(1.0)
    with pytest.raises(ValueError, match="band must be"):
        inf.split_ground(depth, rays, plane, band=(0.5, 0.2))
    with pytest.raises(ValueError, match="need finite 0 <= range_min < range_max"):
        inf.laser_scan(depth, rays, plane, (0.1, 2.0), range_min=1.0, range_max=0.0)
    with pytest.raises(ValueError, match="beams must be at least 2"):
        inf.laser_scan(depth, rays, plane, (0.1, 2.0), 0.1, 8.0, beams=1)

"""The README's main job (scripts/demo/demo_bag.py, run by `make demo`), shortened: a synthetic bag, 2 fine-tune steps
from a start checkpoint made here (the demo's own is built once by demo.sh, not committed), a replay of the last frames through the depth node in a real rclpy graph for the
fine-tuned, start and untrained networks, depth PNGs, the contact sheet, the node's PointCloud2 as PLY, accuracy
against the bag's exact depth with the verdict, and FPS; then the same script on a given bag with given weights.

DDS stays on loopback: the script sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and this test's own domain id."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import dna_depth_core

pytest.importorskip("rclpy")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOMAIN_ID = 64


def read_ply(path):
    with open(path, "rb") as f:
        header = b""
        while not header.endswith(b"end_header\n"):
            header += f.read(1)
        n = int([line for line in header.decode().splitlines() if line.startswith("element vertex")][0].split()[-1])
        rec = np.frombuffer(f.read(), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"),
                                             ("b", "u1")])
    assert len(rec) == n
    return rec


def run_demo(*args):
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(DOMAIN_ID))
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo", "demo_bag.py"), "--domain-id",
                           str(DOMAIN_ID), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_demo_synthetic_bag_then_own_bag_and_weights(tmp_path):
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"  # the demo's network (dna_lite0, 320x96), untrained: a start to fine-tune
    dna_depth_core.save_checkpoint(dna_depth_core.build_model("dna_lite0", height=96, width=320), str(start))
    out = tmp_path / "demo"
    text = run_demo("--out", str(out), "--start", str(start), "--steps", "2", "--frames", "24", "--replay", "3",
                    "--sheet-frames", "2")
    res = json.loads((out / "results.json").read_text())
    assert res["frames"] == 3 and res["camera_height"] == 1.65 and res["main"] == "fine-tuned"
    assert list(res["rows"]) == ["fine-tuned", "start (no fine-tune)", "untrained"]
    assert res["fine_tune"]["steps"] == 2 and "--init-from" in res["fine_tune"]["command"]
    for name, r in res["rows"].items():
        assert r["frames"] == 3 and r["fps"] > 0
        for kind in ("median", "metric"):  # against the bag's exact depth
            assert 0 < r[kind]["abs_rel"] < 1.5 and 0 <= r[kind]["a1"] <= 1
    # the verdict follows the targets
    main = res["rows"]["fine-tuned"]
    met = (main["median"]["abs_rel"] <= 0.15 and main["median"]["a1"] >= 0.80 and main["metric"]["abs_rel"] <= 0.20
           and main["metric"]["a1"] >= 0.70)
    assert res["verdict"] == ("PASS" if met else "FAIL") and f"[demo] {res['verdict']}" in text
    assert "AbsRel" in text and "FPS through the ROS graph" in text
    assert len(list((out / "depth").glob("*.png"))) == 3
    # the contact sheet: a header of 40 rows, 2 frames of 16 + 2 x 96 rows, colour bars of 44; 4 tiles of 2 x 320
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape == (40 + 2 * (16 + 192) + 44, 4 * 640 + 3 * 4, 3)
    report = (out / "report.md").read_text()
    assert "| fine-tuned |" in report and "| untrained |" in report and res["verdict"] in report
    # The PLY is the node's organised cloud of the last frame: z > 0, within the demo's 80 m range, and each
    # point's pixel (x/z, y/z through K) lies inside the 320x96 image.
    pts = read_ply(out / "cloud.ply")
    assert len(pts) > 0.5 * 320 * 96
    z = pts["z"]
    assert np.all(z > 0) and np.all(np.sqrt(pts["x"] ** 2 + pts["y"] ** 2 + z ** 2) <= 80.0 + 1e-3)
    u = 185.6 * pts["x"] / z + 160.0
    v = 184.32 * pts["y"] / z + 48.0
    assert u.min() > -0.51 and u.max() < 319.51 and v.min() > -0.51 and v.max() < 95.51

    # A user's recording with given weights: no training, no ground truth, relative depth (no camera height).
    own = tmp_path / "own"
    text = run_demo("--out", str(own), "--bag", str(out / "synth_bag"), "--weights",
                    str(out / "untrained.safetensors"), "--replay", "2")
    res = json.loads((own / "results.json").read_text())
    assert list(res["rows"]) == ["weights"] and res["fine_tune"] is None and res["verdict"] is None
    assert res["rows"]["weights"]["frames"] == 2 and "median" not in res["rows"]["weights"]
    assert res["camera_height"] is None
    assert "(no ground truth)" in text and not (own / "train").exists() and not (own / "contact_sheet.png").exists()

#!/usr/bin/env python
"""What decoding damaged images writes to stderr, and what capturing it costs.

1. Damaged images: a 1242x375 synthetic street frame encoded as JPEG (quality 90) and PNG, then damaged with a
   fixed seed: JPEG with random bytes of its entropy-coded data overwritten (``jpeg_flip``), JPEG cut short with
   its end-of-image marker put back (``jpeg_cut``), JPEG with junk bytes before that marker (``jpeg_padded``,
   what many USB cameras send: the image is intact), PNG with random bytes of its IDAT data overwritten
   (``png_flip``), PNG cut short (``png_cut``). Each set is decoded in a fresh subprocess three ways: OpenCV
   directly (``cv2.imdecode`` from bytes, ``cv2.imread`` from files: what the decoders did before
   ``dna_depth_core.image_codecs``), ``ros_images.decode_compressed`` on message objects, and
   ``preprocess.load_image`` on files. The parent counts the lines each subprocess wrote to stderr and the
   outcomes (decoded, refused with an error).
2. Overhead: valid 1242x375 JPEG and PNG frames decoded by ``cv2.imdecode`` and by
   ``image_codecs.decode_bytes`` (the same call with descriptor 2 captured), alternating call by call, so load
   changes hit both; medians over ``--rounds``.

    . scripts/dev/env.sh
    python benchmarks/decoder_noise.py --out benchmarks/results/decoder_noise

Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np

from dna_depth_core import image_codecs, machine
from dna_depth_core.data.synthetic import synthetic_frames
from dna_depth_core.preprocess import load_image
from dna_depth_core.ros_images import ConversionError, decode_compressed

W, H = 1242, 375


def _entropy_start(jpg: bytes) -> int:
    """Offset of the first byte after the JPEG's start-of-scan header."""
    sos = jpg.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(jpg[sos + 2:sos + 4], "big")


def damaged_images(count: int, seed: int) -> dict[str, list[bytes]]:
    """``count`` damaged variants per kind (see the module docstring), deterministic for ``seed``."""
    rgb = synthetic_frames(1, W, H, seed=seed, ss=1)[0][0]
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    png = cv2.imencode(".png", bgr)[1].tobytes()
    rng = np.random.default_rng(seed)
    start, end = _entropy_start(jpg), len(jpg) - 2
    idat = png.index(b"IDAT") + 4
    out: dict[str, list[bytes]] = {k: [] for k in ("jpeg_flip", "jpeg_cut", "jpeg_padded", "png_flip", "png_cut")}
    for _ in range(count):
        b = bytearray(jpg)
        at = int(rng.integers(start, end - 64))
        b[at:at + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
        out["jpeg_flip"].append(bytes(b))
        out["jpeg_cut"].append(jpg[:int(rng.integers(start + 64, end))] + b"\xff\xd9")
        out["jpeg_padded"].append(jpg[:-2] + bytes([0x41]) * int(rng.integers(1, 200)) + b"\xff\xd9")
        b = bytearray(png)
        at = int(rng.integers(idat + 2, len(png) - 32))
        b[at:at + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        out["png_flip"].append(bytes(b))
        out["png_cut"].append(png[:int(rng.integers(idat, len(png) - 12))])
    return out


def worker(mode: str, folder: str) -> None:
    """Decode the files of every sub-folder (one per kind) of ``folder`` one way (``opencv`` |
    ``decode_compressed`` | ``load_image``). Before each kind a line ``@@ KIND`` goes to stderr, so the parent can
    count the decoder's lines per kind; the outcome counts per kind are printed as JSON on stdout."""
    outcomes = {}
    for sub in sorted(Path(folder).iterdir()):
        os.write(2, f"@@ {sub.name}\n".encode())
        outcome = outcomes[sub.name] = {"decoded": 0, "refused": 0}
        for path in sorted(sub.iterdir()):
            if mode == "opencv":
                data = np.frombuffer(path.read_bytes(), np.uint8)
                a, b = cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.imread(str(path), cv2.IMREAD_COLOR)
                outcome["decoded" if a is not None else "refused"] += 1
                outcome["decoded" if b is not None else "refused"] += 1
            elif mode == "decode_compressed":
                try:
                    decode_compressed(types.SimpleNamespace(format="jpeg", data=path.read_bytes()))
                    outcome["decoded"] += 1
                except ConversionError:
                    outcome["refused"] += 1
            else:
                try:
                    load_image(path)
                    outcome["decoded"] += 1
                except FileNotFoundError:
                    outcome["refused"] += 1
    print(json.dumps(outcomes))


def noise(count: int, seed: int) -> dict:
    results = {}
    images = damaged_images(count, seed)
    with tempfile.TemporaryDirectory() as tmp:
        for kind, datas in images.items():
            folder = Path(tmp) / kind
            folder.mkdir()
            for i, data in enumerate(datas):
                (folder / f"{i:03d}.{'png' if kind.startswith('png') else 'jpg'}").write_bytes(data)
        for mode in ("opencv", "decode_compressed", "load_image"):
            run = subprocess.run([sys.executable, __file__, "--worker", mode, tmp], capture_output=True, text=True,
                                 check=True)
            outcomes = json.loads(run.stdout)
            per_kind: dict[str, list[str]] = {}
            current = None
            for line in run.stderr.splitlines():
                if line.startswith("@@ "):
                    current = per_kind.setdefault(line[3:].strip(), [])
                elif line.strip() and current is not None:
                    current.append(line)
            for kind in images:
                lines = per_kind.get(kind, [])
                calls = (2 if mode == "opencv" else 1) * len(images[kind])
                results[f"{kind}/{mode}"] = {"kind": kind, "mode": mode, "calls": calls, "stderr_lines": len(lines),
                                             **outcomes[kind], "first_line": lines[0] if lines else None}
    return {key: results[key] for key in sorted(results, key=lambda k: list(images).index(results[k]["kind"]))}


def overhead(rounds: int, seed: int) -> dict:
    rgb = synthetic_frames(1, W, H, seed=seed, ss=1)[0][0]
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    out = {}
    cases = (("jpeg", f"{W}x{H}", cv2.imencode(".jpg", bgr)[1]), ("png", f"{W}x{H}", cv2.imencode(".png", bgr)[1]),
             ("png", "8x8", cv2.imencode(".png", bgr[:8, :8])[1]))
    for kind, size, buf in cases:
        def plain():
            return cv2.imdecode(buf, cv2.IMREAD_COLOR)

        def captured():
            return image_codecs.decode_bytes(buf, cv2.IMREAD_COLOR)[0]

        times: dict = {plain: [], captured: []}
        for _ in range(3):  # warm-up
            plain(), captured()
        for i in range(rounds):
            for fn in ((plain, captured) if i % 2 == 0 else (captured, plain)):  # alternate which goes first
                t0 = time.perf_counter()
                fn()
                times[fn].append((time.perf_counter() - t0) * 1e3)
        mp, mc = statistics.median(times[plain]), statistics.median(times[captured])
        out[f"{kind} {size}"] = {"format": kind, "size": size, "bytes": int(buf.size), "rounds": rounds,
                                 "imdecode_ms": mp, "captured_ms": mc, "ratio": mc / mp,
                                 "difference_us": (mc - mp) * 1e3}
    return out


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Decoder messages on stderr (benchmarks/decoder_noise.py)", "",
        f"{m['date']}, {m['cpu']} ({m['arch']}, {m['usable_cpus']} usable cores, torch CPU capability "
        f"{m['torch_cpu_capability']}), Python {m['python']}, OpenCV {cv2.__version__} "
        f"({report['codecs']}), load average {m['loadavg_start']} at the start, {report['loadavg_end']} at the end.",
        "", f"Damaged {W}x{H} images, {report['count']} per kind (seed {report['seed']}); stderr lines written by "
        "a subprocess that decodes them (OpenCV directly: `cv2.imdecode` and `cv2.imread` on each image):", "",
        "| images | decoder | calls | stderr lines | decoded | refused | first line on stderr |",
        "|---|---|---|---|---|---|---|"]
    for r in report["noise"].values():
        first = (r["first_line"] or "").replace("|", "\\|")
        lines.append(f"| {r['kind']} | {r['mode']} | {r['calls']} | {r['stderr_lines']} | {r['decoded']} | "
                     f"{r['refused']} | {first} |")
    rounds = next(iter(report["overhead"].values()))["rounds"]
    lines += ["", f"Capture overhead on valid images (the two calls alternate, each going first in half the rounds; "
                  f"medians of {rounds}):", "",
              "| image | bytes | cv2.imdecode | image_codecs.decode_bytes | ratio | difference |",
              "|---|---|---|---|---|---|"]
    for r in report["overhead"].values():
        lines.append(f"| {r['format']} {r['size']} | {r['bytes']} | {r['imdecode_ms']:.3f} ms | "
                     f"{r['captured_ms']:.3f} ms | {r['ratio']:.3f} | {r['difference_us']:.1f} us |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=40, help="damaged images per kind (default 40)")
    ap.add_argument("--rounds", type=int, default=200, help="timed decodes per format and decoder (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/decoder_noise", help="OUT.json and OUT.md are written")
    ap.add_argument("--worker", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    report = {"machine": machine.describe(), "count": args.count, "seed": args.seed,
              "codecs": "; ".join(" ".join(line.split()) for line in cv2.getBuildInformation().splitlines()
                                  if line.strip().startswith(("JPEG:", "PNG:")))}
    report["noise"] = noise(args.count, args.seed)
    report["overhead"] = overhead(args.rounds, args.seed)
    report["loadavg_end"] = machine.load_average()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    Path(args.out + ".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

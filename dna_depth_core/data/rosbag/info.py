"""``bag-info``: what a bag holds for training (image and CameraInfo topics: counts, rates, encodings, sizes,
intrinsics), whether its mcap chunks carry CRCs, and every damaged part."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dna_depth_core.camera import CameraInfoError, camera_info_intrinsics
from dna_depth_core.data.rosbag.damage import BagDamage, BagReadError, damage_summary
from dna_depth_core.data.rosbag.frames import image_encoding
from dna_depth_core.data.rosbag.mcap import FormatError, McapFile
from dna_depth_core.data.rosbag.read import CAMERA_INFO_TYPE, IMAGE_TYPES, bag_topics, iter_bag, mcap_files


def _chunk_crcs(files: list[Path]) -> dict | None:
    if not files:
        return None
    chunks = with_crc = 0
    for f in files:
        try:
            with McapFile(f) as m:
                n, c = m.chunk_crcs()
        except FormatError:  # not an mcap file: reported as damage by bag_topics / iter_bag
            continue
        chunks, with_crc = chunks + n, with_crc + c
    return {"chunks": chunks, "with_crc": with_crc}


def bag_info(paths, max_decode: int = 20) -> list[dict]:
    """Per bag: its image and CameraInfo topics, its mcap chunks and its damage.

    Each entry: ``bag``; ``topics`` (per image/CameraInfo topic: ``topic``, ``type``, ``count``, ``rate_hz`` =
    ``(count - 1) / (last - first)`` of the receive times, ``duration_s``, ``encodings`` (CompressedImage:
    ``compressed:FORMAT``; CameraInfo: distortion models), ``sizes`` (width, height); CameraInfo also ``K``, its
    ``K_source`` (``P`` or ``K``, :func:`dna_depth_core.camera.camera_info_intrinsics`) or ``problems``);
    ``other_topics`` [(topic, type)]; ``mcap`` ({"chunks", "with_crc"}, None for other storages); ``damaged`` (a
    text naming every damaged part, None when intact) and ``damage`` (each part as a dict). Only the first
    ``max_decode`` messages of each topic are looked into (encodings, sizes, K); counts and rates cover every
    message that can be read.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for path in map(Path, paths):
        damage: list[BagDamage] = []
        try:
            found = {t: m for t, m, _ in bag_topics(path)}
        except BagReadError as exc:
            out.append({"bag": str(path), "topics": [], "other_topics": [], "mcap": None, "damaged": str(exc),
                        "damage": []})
            continue
        wanted = {t for t, m in found.items() if m in IMAGE_TYPES or m == CAMERA_INFO_TYPE}
        topics: dict[str, dict] = {t: {"topic": t, "type": found[t], "count": 0, "encodings": set(), "sizes": set(),
                                       "_t": []} for t in sorted(wanted)}
        for m in iter_bag(path, wanted, on_damage="keep", damage=damage):
            d = topics[m.topic]
            d["count"] += 1
            d["_t"].append(m.timestamp)
            if d["count"] > max_decode:
                continue
            if m.msgtype == CAMERA_INFO_TYPE:
                d["sizes"].add((int(m.msg.width), int(m.msg.height)))
                d["encodings"].add(str(m.msg.distortion_model) or "none")
                if "K" not in d and "problems" not in d:
                    try:
                        ci = camera_info_intrinsics(m.msg)
                        d["K"], d["K_source"] = ci.K.round(3).tolist(), ci.source
                    except CameraInfoError as exc:
                        d["problems"] = [p.message for p in exc.problems]
            else:
                d["encodings"].add(image_encoding(m.msg, m.msgtype))
                if m.msgtype.endswith("/Image"):
                    d["sizes"].add((int(m.msg.width), int(m.msg.height)))
        for d in topics.values():
            ts = np.sort(np.asarray(d.pop("_t"), np.int64))
            span = (ts[-1] - ts[0]) / 1e9 if len(ts) > 1 else 0.0
            d["rate_hz"] = float((len(ts) - 1) / span) if span > 0 else 0.0
            d["duration_s"] = float(span)
            d["encodings"] = sorted(d["encodings"])
            d["sizes"] = sorted(d["sizes"])
        out.append({"bag": str(path), "topics": list(topics.values()),
                    "other_topics": sorted((t, m) for t, m in found.items() if t not in wanted),
                    "mcap": _chunk_crcs(mcap_files(path)),
                    "damaged": f"bag {path} is damaged: {damage_summary(damage)}" if damage else None,
                    "damage": [d.as_dict() for d in damage]})
    return out


def format_bag_info(infos: list[dict]) -> str:
    """:func:`bag_info`'s result as text: a line per topic (and its K), the mcap chunks, a line per damaged part."""
    lines = []
    for info in infos:
        lines.append(f"{info['bag']}")
        if not info["topics"]:
            lines.append("  no image or camera_info topics")
        for d in info["topics"]:
            sizes = ", ".join(f"{w}x{h}" for w, h in d["sizes"]) or "-"
            lines.append(f"  {d['topic']:<32} {d['type']:<32} {d['count']:>7} msgs {d['rate_hz']:8.2f} Hz  "
                         f"{', '.join(d['encodings']) or '-'}  {sizes}")
            if "K" in d:
                K = d["K"]
                lines.append(f"  {'':<32} fx={K[0][0]:g} fy={K[1][1]:g} cx={K[0][2]:g} cy={K[1][2]:g} "
                             f"(from {d['K_source']})")
            for problem in d.get("problems", []):
                lines.append(f"  {'':<32} unusable: {problem}")
        for t, m in info["other_topics"]:
            lines.append(f"  {t:<32} {m} (not used)")
        mc = info.get("mcap")
        if mc:
            if mc["chunks"] and mc["with_crc"] == mc["chunks"]:
                lines.append(f"  mcap: {mc['chunks']} chunks, all with a CRC (checked when read)")
            else:
                lines.append(f"  mcap: {mc['chunks']} chunks, {mc['with_crc']} with a CRC: damage inside the others "
                             "cannot be detected")
        if info["damaged"]:
            for text in [d["description"] for d in info["damage"]] or [info["damaged"]]:
                lines.append(f"  DAMAGED: {text}")
    return "\n".join(lines)


__all__ = ["bag_info", "format_bag_info"]

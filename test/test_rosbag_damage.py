"""Damaged bags: truncated and overwritten mcap files (chunk CRCs), corrupt messages, unreadable sqlite3.

What was damaged is found independently of the project's reader: the chunk byte and time ranges come from
``rosbags``' own mcap index of the intact copy, and ``rosbags``' reader (which checks chunk CRCs) confirms that the
CRCs the project's writer fills in are right and that the damage breaks one.
"""
from __future__ import annotations

import argparse
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapReader

from dna_depth_core.data import rosbag as rb
from dna_depth_core.data.rosbag.read import typestore

FRAMES, START, PERIOD = 24, 1_700_000_000_000_000_000, 100_000_000


@pytest.fixture(scope="module")
def synth_bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("sbag")
    out = {}
    for storage in ("mcap", "sqlite3"):
        out[storage] = d / f"synth_{storage}"
        rb.write_synthetic_bag(out[storage], 16, seed=2, width=96, height=32, fps=30.0, storage=storage, ss=1)
    return out


@pytest.fixture(scope="module")
def chunked_bag(tmp_path_factory):
    """A 24-frame 320x96 synthetic mcap bag (image, camera_info, depth at 10 Hz; no LiDAR, no /tf_static): five
    chunks of ~1 MB, and rosbags' index of it: [(chunk start byte, length, first time, last time)]."""
    path = tmp_path_factory.mktemp("cbag") / "chunked"
    rb.write_synthetic_bag(path, FRAMES, seed=3, width=320, height=96, ss=1, start_ns=START, lidar_topic=None,
                           tf_static=False)
    reader = McapReader(next(path.glob("*.mcap")))
    reader.open()
    chunks = [(c.chunk_start_offset, c.chunk_length, c.message_start_time, c.message_end_time) for c in reader.chunks]
    reader.close()
    assert len(chunks) >= 4
    return path, chunks


def damaged_copy(bag: Path, dst: Path, at: int, size: int = 4096, seed: int = 0) -> Path:
    """A copy of ``bag`` with ``size`` random bytes written over its mcap file from byte ``at``."""
    shutil.copytree(bag, dst)
    f = next(dst.glob("*.mcap"))
    data = bytearray(f.read_bytes())
    data[at:at + size] = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    f.write_bytes(bytes(data))
    return dst


def rosbags_count(bag: Path) -> int:
    with AnyReader([bag], default_typestore=typestore()) as reader:
        return sum(1 for _ in reader.messages())


def test_intact_bag_reads_fully_with_checked_crcs(chunked_bag):
    path, chunks = chunked_bag
    assert rosbags_count(path) == 3 * FRAMES  # rosbags checks every chunk's CRC while reading
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fr = rb.read_bag_frames(path)
    assert len(fr) == FRAMES and fr.damaged is None and fr.damage == []
    np.testing.assert_array_equal(fr.stamps, START + PERIOD * np.arange(FRAMES))
    info = rb.bag_info([path])[0]
    assert info["damaged"] is None and info["mcap"] == {"chunks": len(chunks), "with_crc": len(chunks)}
    assert "all with a CRC" in rb.format_bag_info([info])


def test_random_bytes_over_the_middle_are_named_and_keep_trains_on_intact_chunks(chunked_bag, tmp_path, capsys):
    path, chunks = chunked_bag
    f = next(path.glob("*.mcap"))
    mid = f.stat().st_size // 2
    k, (offset, length, t0, t1) = next((i, c) for i, c in enumerate(chunks) if c[0] < mid and mid + 4096 <= c[0] + c[1])
    bad = damaged_copy(path, tmp_path / "bad_bag", mid)
    with pytest.raises(Exception, match="checksum mismatch"):
        rosbags_count(bad)  # rosbags sees it too, but names nothing and reads no further

    lost = (START + PERIOD * np.arange(FRAMES) >= t0) & (START + PERIOD * np.arange(FRAMES) <= t1)
    assert 0 < lost.sum() < FRAMES
    with pytest.raises(rb.BagReadError) as ei:
        rb.read_bag_frames(bad)
    err = ei.value
    text = str(err)
    assert "bad_bag" in text and f"chunk {k} at byte {offset}" in text and "CRC mismatch" in text
    assert f"{t0 / 1e9:.6f} s to {t1 / 1e9:.6f} s" in text and f"/camera/image_raw: {lost.sum()} messages" in text
    assert err.damage.kind == "chunk" and err.damage.chunks == (k,) and (err.damage.start, err.damage.end) == (t0, t1)
    assert len(err.frames) == np.argmax(lost)  # the frames before the damaged chunk

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fr = rb.read_bag_frames(bad, on_damage="keep")
    assert len(caught) == 1 and f"chunk {k} at byte {offset}" in str(caught[0].message)
    np.testing.assert_array_equal(fr.stamps, (START + PERIOD * np.arange(FRAMES))[~lost])
    assert fr.damage[0].chunks == (k,) and f"chunk {k}" in fr.damaged

    # training with bag_on_damage: keep uses every intact chunk, before and after the damaged one: triplets
    # (0, -1, 1) whose three frames are all intact and 0.1 s apart
    with pytest.warns(UserWarning, match=f"chunk {k} at byte {offset}"):
        ds = rb.BagDataset([bad], 32, 96, num_scales=1, val_fraction=0.0, static_threshold=0.0, on_damage="keep")
    intact = np.flatnonzero(~lost)
    expect = [i for i in intact if i - 1 in intact and i + 1 in intact]
    assert [int(fr.stamps[s.target] - START) // PERIOD for s in ds.samples] == expect

    from dna_depth_core.commands import bag_info

    p = argparse.ArgumentParser()
    bag_info.add_arguments(p)
    assert bag_info.run(p.parse_args([str(bad)])) == 1
    out = capsys.readouterr().out
    assert f"DAMAGED: {bad / f.name}: chunk {k} at byte {offset}" in out
    assert f"{FRAMES - lost.sum()} msgs" in out


def test_damage_over_a_chunk_header_resumes_at_the_next_chunk(chunked_bag, tmp_path):
    """Random bytes over a chunk's record header leave no record boundary: the summary's chunk index tells where
    the next chunk starts."""
    path, chunks = chunked_bag
    k = 2
    offset, _, t0, t1 = chunks[k]
    bad = damaged_copy(path, tmp_path / "header_bag", offset, seed=5)
    with pytest.raises(rb.BagReadError, match=f"chunks? {k} at byte {offset}.*resumed at the next chunk, byte "
                                              f"{chunks[k + 1][0]}"):
        rb.read_bag_frames(bad)
    with pytest.warns(UserWarning, match="intact parts"):
        fr = rb.read_bag_frames(bad, on_damage="keep")
    stamps = START + PERIOD * np.arange(FRAMES)
    np.testing.assert_array_equal(fr.stamps, stamps[(stamps < t0) | (stamps > t1)])


def test_damaged_summary_is_named_and_loses_no_frame(chunked_bag, tmp_path):
    """Random bytes over the summary section (the index at the end of the file): named; the data section holds
    every channel and message, so keep mode reads all frames."""
    path, _ = chunked_bag
    data = next(path.glob("*.mcap")).read_bytes()
    (summary_start,) = struct.unpack_from("<Q", data, len(data) - 8 - 20)  # the footer's first field
    bad = damaged_copy(path, tmp_path / "summary_bag", summary_start, size=256, seed=2)
    with pytest.raises(rb.BagReadError, match="summary section .* reading the data section without it"):
        rb.read_bag_frames(bad)
    with pytest.warns(UserWarning, match="summary section"):
        fr = rb.read_bag_frames(bad, on_damage="keep")
    np.testing.assert_array_equal(fr.stamps, START + PERIOD * np.arange(FRAMES))


def test_mcap_without_crcs_is_reported_and_can_get_them(tmp_path):
    """rosbags' writer leaves chunk CRCs at 0: bag-info says damage cannot be detected; add_chunk_crcs fills them
    in, and rosbags' reader (which checks them) still reads every message."""
    path = tmp_path / "plain"
    ts = typestore()
    writer = Writer(path, version=8, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conn = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
    for i in range(5):
        msg = ts.types["std_msgs/msg/String"](data=f"hello {i}")
        writer.write(conn, 10**9 + i, ts.serialize_cdr(msg, "std_msgs/msg/String"))
    writer.close()
    info = rb.bag_info([path])[0]
    assert info["mcap"] == {"chunks": 1, "with_crc": 0}
    assert "0 with a CRC: damage inside the others cannot be detected" in rb.format_bag_info([info])
    assert rb.add_chunk_crcs(next(path.glob("*.mcap"))) == 1
    assert rb.bag_info([path])[0]["mcap"] == {"chunks": 1, "with_crc": 1}
    assert rosbags_count(path) == 5
    assert [m.msg.data for m in rb.iter_bag(path)] == [f"hello {i}" for i in range(5)]


def test_truncated_mcap_names_bag_and_place_and_keeps_earlier_messages(synth_bags, tmp_path):
    bad = tmp_path / "cut_bag"
    shutil.copytree(synth_bags["mcap"], bad)
    f = next(bad.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[: int(f.stat().st_size * 0.6)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(rb.BagReadError) as ei:
            rb.read_bag_frames(bad)
        err = ei.value
        assert "cut_bag" in str(err) and "damaged" in str(err) and "messages read before the damage" in str(err)
        assert err.index > 0 and err.timestamp is not None and str(err.timestamp / 1e9)[:6] in str(err)
        assert err.frames is not None and 3 <= len(err.frames) < 16
        with pytest.warns(UserWarning, match="before the damage"):
            ds = rb.BagDataset([bad], 32, 96, num_scales=1, val_fraction=0.0, on_damage="keep")
        assert len(ds.bags[0]) == len(err.frames) and ds.bags[0].damaged
        info = rb.bag_info([bad])[0]
    assert info["damaged"] and "cut_bag" in info["damaged"]


def test_corrupt_message_and_unreadable_sqlite(tmp_path, synth_bags):
    path = tmp_path / "corrupt_bag"
    rgb = np.full((32, 96, 3), 128, np.uint8)
    rgb[:, ::7] = 20
    K = np.array([[50.0, 0, 47.5], [0, 50, 15.5], [0, 0, 1]])
    t0 = 1_000_000_000_000
    with rb.ImageBagWriter(path, storage="sqlite3") as w:
        for i in range(6):
            w.write(t0 + i * 100_000_000, np.roll(rgb, 3 * i, axis=1), K)
        T = w.ts.types
        broken = T["sensor_msgs/msg/Image"](header=w.header(t0 + 600_000_000), height=32, width=96, encoding="rgb8",
                                           is_bigendian=0, step=288, data=np.zeros(100, np.uint8))
        w.writer.write(w.c_img, t0 + 600_000_000, w.ts.serialize_cdr(broken, "sensor_msgs/msg/Image"))
        w.write(t0 + 700_000_000, rgb, K)
    with pytest.raises(rb.BagReadError, match=r"corrupt_bag: image message \d+ .*1000\.600000 s.*cannot be decoded"):
        rb.read_bag_frames(path)
    # keep: the undecodable frame is skipped and named, the frame after it is used
    with pytest.warns(UserWarning, match=r"image message \d+ .*1000\.600000 s.*cannot be decoded"):
        fr = rb.read_bag_frames(path, on_damage="keep")
    assert len(fr) == 7 and fr.K_norm is not None
    np.testing.assert_array_equal(fr.stamps, t0 + 100_000_000 * np.array([0, 1, 2, 3, 4, 5, 7]))

    cut = tmp_path / "cut_sqlite"
    shutil.copytree(synth_bags["sqlite3"], cut)
    f = next(cut.glob("*.db3"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(rb.BagReadError, match="cut_sqlite.*cannot be opened"):
        rb.read_bag_frames(cut)

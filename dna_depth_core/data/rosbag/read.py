"""Reading bags: their topics (:func:`bag_topics`) and their messages (:func:`iter_bag`), deserialised.

One path per storage: ROS 2 mcap files through :class:`~dna_depth_core.data.rosbag.mcap.McapFile` (the project's
record reader: chunk CRCs checked, damaged chunks named and skippable, files cut short readable), ROS 2 sqlite3
and ROS 1 bags through ``rosbags``' :class:`~rosbags.highlevel.AnyReader` (which can only stop at damage).
Nothing here imports rclpy.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Iterator

import yaml
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from dna_depth_core.data.rosbag.damage import BagDamage, BagReadError, check_on_damage, format_ns
from dna_depth_core.data.rosbag.mcap import FormatError, McapFile, RawMessage

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"


@dataclasses.dataclass
class BagMessage:
    """One deserialised message of a bag."""

    topic: str
    msgtype: str
    timestamp: int  # bag receive (log) time, ns
    msg: object     # the deserialised message (a rosbags dataclass: the same field names as rclpy's)
    index: int      # position among the messages one iter_bag call yielded, from 0


def typestore():
    """The ``rosbags`` type store used for ROS 2 messages (the ROS 2 Humble definitions; sensor_msgs' Image,
    CompressedImage and CameraInfo are the same in every ROS 2 release)."""
    return get_typestore(Stores.ROS2_HUMBLE)


def mcap_files(path: Path) -> list[Path]:
    """The ``.mcap`` files of a bag, in recording order (``metadata.yaml``'s ``relative_file_paths``, else by
    name); empty when the bag is not an mcap bag."""
    if path.is_file():
        return [path] if path.suffix == ".mcap" else []
    if not path.is_dir():
        return []
    listed = [path / rel for rel in _metadata(path).get("relative_file_paths", []) or []]
    listed = [p for p in listed if p.suffix == ".mcap" and p.is_file()]
    return listed or sorted(path.glob("*.mcap"))


def _metadata(path: Path) -> dict:
    """The bag's ``metadata.yaml`` (``rosbag2_bagfile_information``), or {} when it has none that parses."""
    meta = (path if path.is_dir() else path.parent) / "metadata.yaml"
    if not meta.is_file():
        return {}
    try:
        info = yaml.safe_load(meta.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        return {}
    info = info.get("rosbag2_bagfile_information") if isinstance(info, dict) else None
    return info if isinstance(info, dict) else {}


def _metadata_topics(path: Path) -> list[tuple[str, str]]:
    """``[(topic, type)]`` in the order of ``metadata.yaml`` (the channel ids of ``rosbags``' writer)."""
    out = []
    for t in _metadata(path).get("topics_with_message_count", []) or []:
        try:
            out.append((str(t["topic_metadata"]["name"]), str(t["topic_metadata"]["type"])))
        except (KeyError, TypeError):
            return []
    return out


class _Deserializer:
    """CDR -> message for mcap channels; types missing from :func:`typestore` are registered from the channel's
    ``ros2msg`` schema (custom messages)."""

    def __init__(self):
        self.store = typestore()
        self.own = False

    def __call__(self, raw: RawMessage) -> object:
        ch = raw.channel
        if ch.encoding != "cdr":
            raise ValueError(f"message encoding '{ch.encoding}' is not cdr (only ROS 2 messages can be read)")
        if ch.msgtype not in self.store.fielddefs:
            if ch.schema_encoding != "ros2msg" or not ch.schema:
                raise ValueError(f"type {ch.msgtype!r} is unknown and the bag has no ros2msg definition of it")
            if not self.own:
                fresh = get_typestore(Stores.EMPTY)
                fresh.register(self.store.fielddefs)
                self.store, self.own = fresh, True
            self.store.register(get_types_from_msg(ch.schema.decode("utf-8", "replace"), ch.msgtype))
        return self.store.deserialize_cdr(raw.data, ch.msgtype)


def _mcap_stream(path: Path, files: list[Path], wanted: set[str] | None
                 ) -> Iterator[tuple[str, str, int, object] | BagDamage]:
    """``(topic, msgtype, receive time, message)`` of the bag's mcap files one after the other, and their damage
    (a file that stops early is followed by the next one)."""
    fallback = _metadata_topics(path)
    deserialize = _Deserializer()
    for f in files:
        try:
            m = McapFile(f, bag=path, fallback_channels=fallback)
        except FormatError as exc:
            yield BagDamage(str(path), str(f), "open", str(exc), stopped=True)
            continue
        with m:
            for item in m.scan(wanted):
                if isinstance(item, BagDamage):
                    yield item
                    continue
                try:
                    msg = deserialize(item)
                except Exception as exc:  # noqa: BLE001 - rosbags raises many kinds; name the message
                    yield BagDamage(str(path), str(f), "message", f"does not deserialise as {item.channel.msgtype}: "
                                    f"{exc}", start=item.log_time, end=item.log_time, topics={item.channel.topic: 1})
                    continue
                yield item.channel.topic, item.channel.msgtype, item.log_time, msg


def _anyreader_stream(path: Path, wanted: set[str] | None) -> Iterator[tuple[str, str, int, object] | BagDamage]:
    """``(topic, msgtype, receive time, message)`` of a sqlite3 or ROS 1 bag, in time order, and the damage that
    stops ``rosbags`` (it cannot read past it)."""
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises many kinds; name the bag
        yield BagDamage(str(path), str(path), "open", str(exc), stopped=True)
        return
    try:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        it = reader.messages(connections=conns) if conns else iter(())
        n, last = 0, None
        while True:
            try:
                conn, t, raw = next(it)
                msg = reader.deserialize(raw, conn.msgtype)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001
                yield BagDamage(str(path), str(path), "read", f"reading stopped at message {n} (after "
                                f"{format_ns(last)}): {exc}", start=last, stopped=True)
                return
            yield conn.topic, conn.msgtype, int(t), msg
            n, last = n + 1, int(t)
    finally:
        reader.close()


def iter_bag(path, topics: Iterable[str] | None = None, on_damage: str = "error",
             damage: list[BagDamage] | None = None) -> Iterator[BagMessage]:
    """Deserialised messages of one bag (ROS 1 ``.bag``, ROS 2 folder, ``.mcap`` or ``.db3``).

    Order: ``rosbags``' (time order) for sqlite3 and ROS 1; file order for mcap (recorders write in receive
    order). ``topics`` restricts the output.

    Damage (see :class:`~dna_depth_core.data.rosbag.damage.BagDamage`): with ``on_damage="error"`` a
    :class:`BagReadError` is raised at the first damaged part, after every message before it was yielded. With
    ``"keep"`` each damaged part is appended to ``damage`` (required) and reading goes on where it can: after a
    damaged mcap chunk, at the next chunk; an undeserialisable message is skipped; sqlite3 and ROS 1 bags end at
    their first damage.
    """
    check_on_damage(on_damage)
    if on_damage == "keep" and damage is None:
        raise ValueError("on_damage='keep' needs a list to report the damaged parts in (damage=[])")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    wanted = None if topics is None else set(topics)
    files = mcap_files(path)
    stream = _mcap_stream(path, files, wanted) if files else _anyreader_stream(path, wanted)
    n, last = 0, None
    for item in stream:
        if isinstance(item, BagDamage):
            if on_damage == "error":
                raise damage_error(item, n, last)
            damage.append(item)
            continue
        topic, msgtype, t, msg = item
        yield BagMessage(topic, msgtype, t, msg, n)
        n, last = n + 1, t


def damage_error(damage: BagDamage, index: int, last: int | None) -> BagReadError:
    """The :class:`BagReadError` for ``damage`` met after ``index`` messages (the last one at ``last`` ns)."""
    if damage.kind == "open":
        text = f"bag {damage.bag} cannot be opened ({damage.file}: {damage.reason}); no messages could be read"
    else:
        text = (f"bag {damage.bag} is damaged: {damage.describe()}; {index} messages read before the damage (last "
                f"timestamp {format_ns(last)}); bag_on_damage: keep (bag-extract --keep-damaged) reads the intact "
                f"parts")
    return BagReadError(text, bag=damage.bag, index=index, timestamp=last, damage=damage)


def bag_topics(path) -> list[tuple[str, str, int]]:
    """``[(topic, msgtype, count)]`` of a bag, from its index (the mcap summary, the sqlite3 or ROS 1 index); an
    mcap without a summary is scanned (counting the messages that can be read). Raises :class:`BagReadError` when
    no topic can be read at all."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    files = mcap_files(path)
    if not files:
        try:
            with AnyReader([path], default_typestore=typestore()) as reader:
                out: dict[tuple[str, str], int] = {}
                for c in reader.connections:
                    out[(c.topic, c.msgtype)] = out.get((c.topic, c.msgtype), 0) + int(c.msgcount)
                return [(t, m, n) for (t, m), n in out.items()]
        except Exception as exc:  # noqa: BLE001 - rosbags raises many kinds; name the bag
            raise BagReadError(f"bag {path} cannot be opened ({exc}); no messages could be read", bag=path,
                               index=0) from None
    counts: dict[tuple[str, str], int] = {}
    fallback = _metadata_topics(path)
    for f in files:
        try:
            with McapFile(f, bag=path, fallback_channels=fallback) as m:
                indexed = m.topics()
                if indexed is not None:
                    for t, mt, n in indexed:
                        counts[(t, mt)] = counts.get((t, mt), 0) + n
                    continue
                for item in m.scan():
                    if isinstance(item, RawMessage):
                        key = (item.channel.topic, item.channel.msgtype)
                        counts[key] = counts.get(key, 0) + 1
        except FormatError as exc:
            raise BagReadError(f"bag {path} cannot be opened ({f}: {exc}); no messages could be read", bag=path,
                               index=0) from None
    return [(t, m, n) for (t, m), n in counts.items()]


__all__ = ["BagMessage", "CAMERA_INFO_TYPE", "IMAGE_TYPES", "bag_topics", "damage_error", "iter_bag", "mcap_files",
           "typestore"]

"""What a damaged bag looks like to its readers: :class:`BagDamage` (one damaged part, named) and
:class:`BagReadError` (raised when a bag is read with ``on_damage="error"``)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

#: What to do when a bag is damaged: stop with :class:`BagReadError`, or keep the intact parts (with a warning).
ON_DAMAGE = ("error", "keep")


def format_ns(ns: int | None) -> str:
    """A timestamp in nanoseconds as seconds with six decimals (``"1700000000.400000 s"``), or ``"unknown"``."""
    return "unknown" if ns is None else f"{ns / 1e9:.6f} s"


def check_on_damage(on_damage: str) -> str:
    """``on_damage`` itself when it is one of :data:`ON_DAMAGE`; ``ValueError`` otherwise."""
    if on_damage not in ON_DAMAGE:
        raise ValueError(f"on_damage must be 'error' or 'keep', got {on_damage!r}")
    return on_damage


@dataclasses.dataclass(frozen=True)
class BagDamage:
    """One damaged part of a bag.

    Attributes:
        bag: the bag as given (folder or file).
        file: the file the damage is in (an ``.mcap`` or ``.db3`` of a bag folder, or the bag file).
        kind: ``"chunk"`` (an mcap chunk whose CRC, size, compression or records do not check out),
            ``"records"`` (bytes of an mcap file that are not a valid record), ``"summary"`` (the mcap summary
            section fails its CRC or does not parse; the data is read without it), ``"truncated"`` (the file ends
            inside a record), ``"message"`` (one message that does not deserialise or decode), ``"open"`` (the bag
            cannot be opened) or ``"read"`` (the storage library stopped reading).
        reason: what is wrong, with the values (e.g. ``"CRC mismatch: stored 0x..., computed 0x..."``).
        offset: byte offset in ``file`` where the damaged part starts (None: not known).
        chunks: indices of the mcap chunks it covers, counted from 0 in file order.
        start, end: receive-time range (ns) of the messages it covers (None: not known).
        topics: messages lost per topic, from the bag's own index (None where the index does not say).
        stopped: True when reading could not go on past it (the rest of the file is lost too).
    """

    bag: str
    file: str
    kind: str
    reason: str
    offset: int | None = None
    chunks: tuple[int, ...] = ()
    start: int | None = None
    end: int | None = None
    topics: dict[str, int | None] = dataclasses.field(default_factory=dict)
    stopped: bool = False

    def describe(self) -> str:
        """One line naming the file, the place (chunk, byte), the time range, the topics and the reason."""
        place = []
        if self.chunks:
            ids = ", ".join(str(c) for c in self.chunks)
            place.append(f"chunk{'s' if len(self.chunks) > 1 else ''} {ids}")
        if self.offset is not None:
            place.append(f"at byte {self.offset}")
        details = []
        if self.start is not None or self.end is not None:
            if self.start == self.end:
                details.append(f"time {format_ns(self.start)}")
            else:
                details.append(f"times {format_ns(self.start)} to {format_ns(self.end)}")
        if self.topics:
            details.append(", ".join(f"{t}: {'?' if n is None else n} message{'' if n == 1 else 's'}"
                                     for t, n in sorted(self.topics.items())))
        text = f"{self.file}: {' '.join(place) if place else self.kind}"
        if details:
            text += f" ({'; '.join(details)})"
        return f"{text}: {self.reason}"

    def as_dict(self) -> dict:
        """The fields as a JSON-friendly dict, with ``description`` (:meth:`describe`)."""
        out = dataclasses.asdict(self)
        out["chunks"] = list(self.chunks)
        out["description"] = self.describe()
        return out


class BagReadError(RuntimeError):
    """A bag that cannot be read (fully).

    Attributes:
        bag: the bag (str) or None.
        index: messages read before the damage.
        timestamp: receive time (ns) of the last message read before the damage, or None.
        damage: the :class:`BagDamage` that stopped the read (None when the problem has no place in the file).
        frames: a :class:`~dna_depth_core.data.rosbag.frames.BagFrames` of what was read before the damage (set
            by :func:`~dna_depth_core.data.rosbag.frames.read_bag_frames`), or None.
    """

    def __init__(self, message: str, bag: str | Path | None = None, index: int | None = None,
                 timestamp: int | None = None, damage: BagDamage | None = None):
        super().__init__(message)
        self.bag = None if bag is None else str(bag)
        self.index = index
        self.timestamp = timestamp
        self.damage = damage
        self.frames: Any = None


def damage_summary(damage: Sequence[BagDamage]) -> str:
    """The damaged parts of one bag, one after the other (``"; "``-separated :meth:`BagDamage.describe`)."""
    return "; ".join(d.describe() for d in damage)


__all__ = ["BagDamage", "BagReadError", "ON_DAMAGE", "check_on_damage", "damage_summary", "format_ns"]

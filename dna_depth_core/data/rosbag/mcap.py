"""The mcap reader: every ROS 2 ``.mcap`` file is read here, record by record, with the chunk CRCs checked.

Why not ``rosbags``' own mcap reader: it checks a chunk's CRC when one is set, but then stops the whole read with
"Chunk checksum mismatch." (no chunk, time or topic, and no way to read the chunks after it); it cannot open a
file without its summary section (a recording that was killed); and its writer leaves every CRC at 0, so nothing
written with it could be checked at all. This reader:

- reads the data section in file order; each chunk is decompressed and its ``uncompressed_crc`` (CRC-32 of the
  decompressed records; 0 = not set) is checked when set; then its records (schemas, channels, messages) are read;
- uses the summary section, when the file has one, for the channels (so the chunks after a damaged one still
  know their topics), for the chunk index (the time range, byte range and per-topic message counts of every
  chunk, to name what a damaged part held) and to resume at the next chunk when the damage leaves no valid
  record boundary;
- yields each damaged part as a :class:`~dna_depth_core.data.rosbag.damage.BagDamage` among the messages and
  leaves the policy (stop or skip) to the caller (:func:`dna_depth_core.data.rosbag.read.iter_bag`);
- reads a file cut short (no summary, no footer) up to the cut, including the complete messages of a cut
  uncompressed chunk (those cannot be checked: the CRC covers the whole chunk).

:func:`add_chunk_crcs` fills in the CRCs of a file whose writer left them at 0 (the project's bag writer calls
it). Format: the MCAP specification (https://mcap.dev/spec): a record is ``opcode u8, length u64, body``;
integers are little endian; strings and byte arrays carry a u32 length prefix, maps a u32 byte-length prefix.

(A little over 500 lines: one concept, reading the format so that any damage is found and named.)
"""
from __future__ import annotations

import dataclasses
import mmap
import struct
from binascii import crc32
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

from rosbags.rosbag2.storage_mcap import DECOMPRESSORS

from dna_depth_core.data.rosbag.damage import BagDamage

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
OP_MESSAGE_INDEX, OP_CHUNK_INDEX, OP_STATISTICS, OP_DATA_END = 0x07, 0x08, 0x0B, 0x0F
RECORD_HEADER = 9                       # opcode u8 + length u64
FOOTER_RECORD = RECORD_HEADER + 20      # summary_start u64, summary_offset_start u64, summary_crc u32
CHUNK_CRC_AT = RECORD_HEADER + 24       # the chunk's uncompressed_crc, after its three u64 fields


class FormatError(ValueError):
    """Bytes that do not parse as the record they should be; the text says which field and where."""


class _Fields:
    """Little-endian fields read in order from ``buf[start:end]``; each read is bounds-checked."""

    def __init__(self, buf, start: int, end: int, what: str):
        self.buf, self.pos, self.end, self.what = buf, start, end, what

    def _take(self, n: int, field: str) -> int:
        if n < 0 or self.pos + n > self.end:
            raise FormatError(f"{self.what}: {field} ({n} bytes at byte {self.pos}) runs past the record's end "
                              f"(byte {self.end})")
        at = self.pos
        self.pos += n
        return at

    def u16(self, field: str) -> int:
        return struct.unpack_from("<H", self.buf, self._take(2, field))[0]

    def u32(self, field: str) -> int:
        return struct.unpack_from("<I", self.buf, self._take(4, field))[0]

    def u64(self, field: str) -> int:
        return struct.unpack_from("<Q", self.buf, self._take(8, field))[0]

    def raw(self, n: int, field: str) -> bytes:
        at = self._take(n, field)
        return bytes(self.buf[at:at + n])

    def string(self, field: str) -> str:
        data = self.raw(self.u32(field + " length"), field)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{self.what}: {field} is not UTF-8") from None

    def sized(self, field: str) -> bytes:
        return self.raw(self.u32(field + " length"), field)


@dataclasses.dataclass(frozen=True)
class Channel:
    """An mcap channel: ``msgtype`` is its schema's name (``sensor_msgs/msg/Image``), ``encoding`` the message
    encoding (``cdr`` for ROS 2), ``schema_encoding``/``schema`` the type definition (``ros2msg`` text)."""

    id: int
    topic: str
    msgtype: str
    encoding: str
    schema_encoding: str = ""
    schema: bytes = b""


@dataclasses.dataclass(frozen=True)
class ChunkEntry:
    """A chunk index entry of the summary: byte range, time range and its message-index records' offsets."""

    start_time: int
    end_time: int
    offset: int
    length: int
    index_offsets: dict[int, int]


@dataclasses.dataclass
class Summary:
    """The summary section: schemas (id -> (name, encoding, data)), channels, chunk index (by offset) and the
    messages per channel id of the statistics record (None when it has none)."""

    schemas: dict[int, tuple[str, str, bytes]]
    channels: dict[int, Channel]
    chunks: list[ChunkEntry]
    counts: dict[int, int] | None


class RawMessage(NamedTuple):
    """A message record: its channel, receive (log) time in ns and serialised payload."""

    channel: Channel
    log_time: int
    data: bytes


def _schema(body: _Fields) -> tuple[int, str, str, bytes]:
    sid = body.u16("schema id")
    return sid, body.string("schema name"), body.string("schema encoding"), body.sized("schema data")


def _channel(body: _Fields, schemas: dict[int, tuple[str, str, bytes]]) -> Channel:
    cid, sid = body.u16("channel id"), body.u16("schema id")
    topic, encoding = body.string("topic"), body.string("message encoding")
    name, schema_encoding, data = schemas.get(sid, ("", "", b""))
    return Channel(cid, topic, name, encoding, schema_encoding, data)


class McapFile:
    """One mcap file, memory-mapped; use it as a context manager.

    Args:
        path: the ``.mcap`` file.
        bag: the bag it belongs to (for the damage reports).
        fallback_channels: ``[(topic, msgtype)]`` in the order of the bag's ``metadata.yaml``, used for channel
            ids that no channel record defines (channel ``k`` is entry ``k - 1``), e.g. in a file cut before them.
    """

    def __init__(self, path, bag=None, fallback_channels: Sequence[tuple[str, str]] = ()):
        self.path = Path(path)
        self.bag = str(bag if bag is not None else path)
        self.fallback = list(fallback_channels)
        with open(self.path, "rb") as f:
            size = f.seek(0, 2)
            if size < len(MAGIC):
                raise FormatError(f"not an mcap file ({size} bytes)")
            self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        head = bytes(self.buf[:len(MAGIC)])
        if head != MAGIC:
            self.close()
            raise FormatError(f"not an mcap file (it starts with {head!r})")
        self.summary_problem: str | None = None
        self.complete, self.data_end, self.summary = self._read_footer_and_summary()
        self.schemas: dict[int, tuple[str, str, bytes]] = {}
        self.channels: dict[int, Channel] = dict(self.summary.channels) if self.summary else {}

    def close(self) -> None:
        self.buf.close()

    def __enter__(self) -> McapFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------------------
    # Footer and summary
    # ------------------------------------------------------------------------------------------------------------
    def _read_footer_and_summary(self) -> tuple[bool, int, Summary | None]:
        """``(complete, data_end, summary)``: whether the file ends with a footer and the magic, where the data
        section ends, and the summary (None when absent or unusable; ``summary_problem`` then says why)."""
        buf, n = self.buf, len(self.buf)
        fpos = n - len(MAGIC) - FOOTER_RECORD
        if fpos < len(MAGIC) or buf[n - len(MAGIC):] != MAGIC or buf[fpos] != OP_FOOTER:
            return False, n, None
        if struct.unpack_from("<Q", buf, fpos + 1)[0] != FOOTER_RECORD - RECORD_HEADER:
            return False, n, None
        summary_start, _, summary_crc = struct.unpack_from("<QQI", buf, fpos + RECORD_HEADER)
        if summary_start == 0:
            return True, fpos, None
        if not len(MAGIC) <= summary_start <= fpos:
            self.summary_problem = f"the footer's summary offset {summary_start} lies outside the file"
            return True, fpos, None
        if summary_crc:
            got = crc32(buf[summary_start:fpos + RECORD_HEADER + 16])
            if got != summary_crc:
                self.summary_problem = (f"summary section (byte {summary_start} on) fails its CRC: stored "
                                        f"0x{summary_crc:08x}, computed 0x{got:08x}")
                return True, summary_start, None
        try:
            return True, summary_start, self._parse_summary(summary_start, fpos)
        except FormatError as exc:
            self.summary_problem = f"summary section does not parse: {exc}"
            return True, summary_start, None

    def _parse_summary(self, start: int, end: int) -> Summary:
        schemas: dict[int, tuple[str, str, bytes]] = {}
        channels: dict[int, Channel] = {}
        chunks: list[ChunkEntry] = []
        counts = None
        for op, body_start, body_end in self._records(start, end, "summary record"):
            body = _Fields(self.buf, body_start, body_end, f"summary record 0x{op:02x} at byte {body_start - 9}")
            if op == OP_SCHEMA:
                sid, name, enc, data = _schema(body)
                schemas[sid] = (name, enc, data)
            elif op == OP_CHANNEL:
                ch = _channel(body, schemas)
                channels[ch.id] = ch
            elif op == OP_CHUNK_INDEX:
                t0, t1, offset, length = (body.u64(f) for f in ("start time", "end time", "offset", "length"))
                size = body.u32("message index offsets length")
                table = _Fields(self.buf, body.pos, body.pos + size, body.what + " message index offsets")
                body.raw(size, "message index offsets")
                offsets = {}
                while table.pos < table.end:
                    cid = table.u16("channel id")
                    offsets[cid] = table.u64("offset")
                chunks.append(ChunkEntry(t0, t1, offset, length, offsets))
            elif op == OP_STATISTICS:
                body.u64("message count")
                body.u16("schema count")
                for field in ("channel count", "attachment count", "metadata count", "chunk count"):
                    body.u32(field)
                body.u64("start time")
                body.u64("end time")
                size = body.u32("channel message counts length")
                table = _Fields(self.buf, body.pos, body.pos + size, body.what + " channel message counts")
                body.raw(size, "channel message counts")
                counts = {}
                while table.pos < table.end:
                    cid = table.u16("channel id")
                    counts[cid] = table.u64("count")
        chunks.sort(key=lambda c: c.offset)
        for i, c in enumerate(chunks):
            if not (len(MAGIC) <= c.offset and c.offset + c.length <= start):
                raise FormatError(f"chunk index entry {i} (byte {c.offset}, {c.length} bytes) lies outside the data "
                                  f"section")
        return Summary(schemas, channels, chunks, counts)

    def _records(self, start: int, end: int, what: str) -> Iterator[tuple[int, int, int]]:
        """``(opcode, body start, body end)`` of the records in ``[start, end)``; FormatError where one overruns."""
        pos = start
        while pos < end:
            if pos + RECORD_HEADER > end:
                raise FormatError(f"{what} header cut at byte {pos}")
            op = self.buf[pos]
            (length,) = struct.unpack_from("<Q", self.buf, pos + 1)
            if pos + RECORD_HEADER + length > end:
                raise FormatError(f"{what} at byte {pos} (opcode 0x{op:02x}, {length} bytes) runs past byte {end}")
            yield op, pos + RECORD_HEADER, pos + RECORD_HEADER + length
            pos += RECORD_HEADER + length

    # ------------------------------------------------------------------------------------------------------------
    # What a damaged part held (from the index)
    # ------------------------------------------------------------------------------------------------------------
    def topics(self) -> list[tuple[str, str, int]] | None:
        """``[(topic, msgtype, count)]`` from the summary's channels and statistics; None when it has neither."""
        if self.summary is None or self.summary.counts is None:
            return None
        out: dict[tuple[str, str], int] = {}
        for cid, ch in self.summary.channels.items():
            key = (ch.topic, ch.msgtype)
            out[key] = out.get(key, 0) + int(self.summary.counts.get(cid, 0))
        return [(t, m, n) for (t, m), n in out.items()]

    def _topic(self, cid: int) -> str:
        ch = self.channels.get(cid)
        if ch is None and 1 <= cid <= len(self.fallback):
            return self.fallback[cid - 1][0]
        return ch.topic if ch is not None else f"channel {cid}"

    def _message_index(self, pos: int) -> tuple[int, int, int, int] | None:
        """``(channel id, messages, first time, last time)`` of the message index record at ``pos`` (None when
        there is none or it does not parse)."""
        if not self._valid_record_at(pos) or self.buf[pos] != OP_MESSAGE_INDEX:
            return None
        end = pos + RECORD_HEADER + struct.unpack_from("<Q", self.buf, pos + 1)[0]
        body = _Fields(self.buf, pos + RECORD_HEADER, end, f"message index at byte {pos}")
        try:
            cid = body.u16("channel id")
            size = body.u32("records length")
            body.raw(size, "records")
        except FormatError:
            return None
        times = [struct.unpack_from("<Q", self.buf, body.pos - size + 16 * i)[0] for i in range(size // 16)]
        return cid, len(times), min(times, default=0), max(times, default=0)

    def _chunk_contents(self, pos: int, record_end: int | None) -> tuple[int | None, int | None, dict]:
        """``(first time, last time, {topic: messages})`` of the chunk at ``pos`` from its message index records
        (found through the summary's chunk index, else right after the chunk record ending at ``record_end``)."""
        entry = next((c for c in self.summary.chunks if c.offset == pos), None) if self.summary else None
        found = []
        if entry is not None:
            found = [self._message_index(off) for off in entry.index_offsets.values()]
        elif record_end is not None:
            at = record_end
            while (mi := self._message_index(at)) is not None:
                found.append(mi)
                at += RECORD_HEADER + struct.unpack_from("<Q", self.buf, at + 1)[0]
        topics: dict[str, int | None] = {}
        times = []
        for mi in found:
            if mi is None:
                continue
            cid, count, t0, t1 = mi
            topics[self._topic(cid)] = topics.get(self._topic(cid), 0) + count
            if count:
                times += [t0, t1]
        if entry is not None:
            for cid in entry.index_offsets:
                topics.setdefault(self._topic(cid), None)
            return entry.start_time, entry.end_time, topics
        return (min(times) if times else None), (max(times) if times else None), topics

    def _chunk_number(self, pos: int, counted: int) -> int:
        if self.summary is not None:
            for i, c in enumerate(self.summary.chunks):
                if c.offset == pos:
                    return i
        return counted

    def _damage(self, kind: str, reason: str, **kw) -> BagDamage:
        return BagDamage(bag=self.bag, file=str(self.path), kind=kind, reason=reason, **kw)

    # ------------------------------------------------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------------------------------------------------
    def _valid_record_at(self, pos: int) -> bool:
        if pos + RECORD_HEADER > self.data_end:
            return False
        op = self.buf[pos]
        length = struct.unpack_from("<Q", self.buf, pos + 1)[0]
        return (0x01 <= op <= 0x0F or op >= 0x80) and pos + RECORD_HEADER + length <= self.data_end

    def _next_chunk_after(self, pos: int) -> int | None:
        if self.summary is None:
            return None
        return next((c.offset for c in self.summary.chunks if c.offset > pos), None)

    def _inner(self, raw: bytes, where: str, topics: set[str] | None, cut_ok: bool) -> Iterator[RawMessage]:
        """The messages among a chunk's records (schemas and channels are registered on the way). ``cut_ok``: stop
        quietly at a record that overruns (a chunk cut by the end of the file)."""
        pos, n = 0, len(raw)
        while pos < n:
            if pos + RECORD_HEADER > n:
                if cut_ok:
                    return
                raise FormatError(f"{where}: record header cut at byte {pos} of the decompressed records")
            op = raw[pos]
            (length,) = struct.unpack_from("<Q", raw, pos + 1)
            end = pos + RECORD_HEADER + length
            if end > n:
                if cut_ok:
                    return
                raise FormatError(f"{where}: record at byte {pos} of the decompressed records (opcode 0x{op:02x}, "
                                  f"{length} bytes) runs past its end ({n} bytes)")
            yield from self._record(raw, op, pos + RECORD_HEADER, end, f"{where}, inner byte {pos}", topics)
            pos = end

    def _record(self, buf, op: int, start: int, end: int, where: str, topics: set[str] | None
                ) -> Iterator[RawMessage]:
        body = _Fields(buf, start, end, where)
        if op == OP_SCHEMA:
            sid, name, enc, data = _schema(body)
            self.schemas[sid] = (name, enc, data)
        elif op == OP_CHANNEL:
            ch = _channel(body, {**(self.summary.schemas if self.summary else {}), **self.schemas})
            self.channels[ch.id] = ch
        elif op == OP_MESSAGE:
            cid, _seq, log_time, _pub = body.u16("channel id"), body.u32("sequence"), body.u64("log time"), \
                body.u64("publish time")
            ch = self.channels.get(cid)
            if ch is None and 1 <= cid <= len(self.fallback):
                ch = Channel(cid, *self.fallback[cid - 1], encoding="cdr")
            if ch is None:
                raise FormatError(f"{where}: message on channel {cid}, which no channel record defines")
            if topics is None or ch.topic in topics:
                yield RawMessage(ch, log_time, bytes(buf[body.pos:end]))

    def _chunk(self, pos: int, end: int, number: int, topics: set[str] | None
               ) -> Iterator[RawMessage | BagDamage]:
        """The messages of the complete chunk record ``[pos, end)``, or one chunk damage."""
        where = f"chunk {number} at byte {pos}"
        body = _Fields(self.buf, pos + RECORD_HEADER, end, where)
        t0 = t1 = None
        try:
            t0, t1 = body.u64("start time"), body.u64("end time")
            size, crc = body.u64("uncompressed size"), body.u32("uncompressed crc")
            compression = body.string("compression")
            data = body.raw(body.u64("records length"), "records")
            if compression not in DECOMPRESSORS:
                raise FormatError(f"unknown compression {compression!r}")
            try:
                raw = DECOMPRESSORS[compression](data, size)
            except Exception as exc:  # noqa: BLE001 - lz4/zstd raise their own types; name the chunk
                raise FormatError(f"does not decompress ({compression}): {exc}") from None
            if len(raw) != size:
                raise FormatError(f"decompressed to {len(raw)} bytes, its header says {size}")
            if crc:
                got = crc32(raw)
                if got != crc:
                    raise FormatError(f"CRC mismatch: stored 0x{crc:08x}, computed 0x{got:08x} (its bytes are not the "
                                      f"ones written)")
            yield from self._inner(raw, where, topics, cut_ok=False)
        except FormatError as exc:
            c0, c1, lost = self._chunk_contents(pos, end)
            reason = str(exc).removeprefix(where + ": ")
            yield self._damage("chunk", reason, offset=pos, chunks=(number,), start=c0 if c0 is not None else t0,
                               end=c1 if c1 is not None else t1, topics=lost)

    def scan(self, topics: set[str] | None = None) -> Iterator[RawMessage | BagDamage]:
        """The messages of ``topics`` (None: all) in file order, with a :class:`BagDamage` for each damaged part."""
        if self.summary_problem:
            yield self._damage("summary", self.summary_problem + "; reading the data section without it")
        pos, counted = len(MAGIC), 0
        while pos < self.data_end:
            valid = self._valid_record_at(pos)
            if valid and self.buf[pos] in (OP_DATA_END, OP_FOOTER):
                if self._next_chunk_after(pos) is None:
                    return
                valid = False  # an end record before the last chunk is damage too
            if not valid:
                if not self.complete:  # no footer: the file was cut here
                    yield from self._cut(pos, counted, topics)
                    return
                damage, nxt = self._records_damage(pos)
                yield damage
                if nxt is None:
                    return
                pos = nxt
                continue
            op = self.buf[pos]
            end = pos + RECORD_HEADER + struct.unpack_from("<Q", self.buf, pos + 1)[0]
            if op == OP_CHUNK:
                number = self._chunk_number(pos, counted)
                damaged = False
                for item in self._chunk(pos, end, number, topics):
                    damaged = damaged or isinstance(item, BagDamage)
                    yield item
                counted = number + 1
                nxt = self._next_chunk_after(pos) if damaged else None
                if nxt is not None:  # its length may be damaged too: resume where the index says
                    pos = nxt
                    continue
            else:
                try:
                    yield from self._record(self.buf, op, pos + RECORD_HEADER, end, f"record at byte {pos}", topics)
                except FormatError as exc:
                    yield self._damage("records", str(exc), offset=pos)
            pos = end

    def _records_damage(self, pos: int) -> tuple[BagDamage, int | None]:
        """The damage of a complete file's bytes from ``pos`` (no valid record there) up to the next chunk the
        summary indexes (None: no index, or no chunk after ``pos``), and that next chunk's offset."""
        nxt = self._next_chunk_after(pos)
        stop = nxt if nxt is not None else self.data_end
        chunks = self.summary.chunks if self.summary else []
        covered = [i for i, c in enumerate(chunks) if pos <= c.offset < stop or c.offset < pos < c.offset + c.length]
        lost: dict[str, int | None] = {}
        times = []
        for i in covered:
            c0, c1, counts = self._chunk_contents(chunks[i].offset, None)
            times += [t for t in (c0, c1) if t is not None]
            for topic, n in counts.items():
                lost[topic] = None if n is None or lost.get(topic, 0) is None else lost.get(topic, 0) + n
        op = self.buf[pos]
        length = struct.unpack_from("<Q", self.buf, pos + 1)[0] if pos + RECORD_HEADER <= self.data_end else 0
        reason = (f"the chunk record's length ({length} bytes) runs past the data section" if op == OP_CHUNK
                  else f"no valid record here (opcode 0x{op:02x}, length {length})")
        reason += (f"; reading resumed at the next chunk, byte {nxt}" if nxt is not None else
                   "; the rest of the data section cannot be read (no chunk index to resume from)")
        damage = self._damage("records", reason, offset=pos, chunks=tuple(covered), start=min(times, default=None),
                              end=max(times, default=None), topics=lost, stopped=nxt is None)
        return damage, nxt

    def chunk_crcs(self) -> tuple[int, int]:
        """``(chunks, chunks with a CRC)`` from the chunk records' headers (nothing decompressed); stops at the first
        invalid record."""
        n = with_crc = 0
        pos = len(MAGIC)
        while self._valid_record_at(pos) and self.buf[pos] not in (OP_DATA_END, OP_FOOTER):
            if self.buf[pos] == OP_CHUNK and pos + CHUNK_CRC_AT + 4 <= self.data_end:
                n += 1
                with_crc += struct.unpack_from("<I", self.buf, pos + CHUNK_CRC_AT)[0] != 0
            pos += RECORD_HEADER + struct.unpack_from("<Q", self.buf, pos + 1)[0]
        return n, with_crc

    def _cut(self, pos: int, number: int, topics: set[str] | None) -> Iterator[RawMessage | BagDamage]:
        """The end of a file cut short at the record at ``pos``: the complete messages of a cut uncompressed chunk,
        then the damage."""
        salvaged = ""
        is_chunk = pos + RECORD_HEADER <= len(self.buf) and self.buf[pos] == OP_CHUNK
        if is_chunk:
            body = _Fields(self.buf, pos + RECORD_HEADER, len(self.buf), f"chunk {number} at byte {pos}")
            try:
                for field in ("start time", "end time", "uncompressed size"):
                    body.u64(field)
                body.u32("uncompressed crc")
                compression = body.string("compression")
                body.u64("records length")
                if compression == "":
                    raw = bytes(self.buf[body.pos:])
                    yield from self._inner(raw, f"chunk {number} at byte {pos}", topics, cut_ok=True)
                    salvaged = " (its complete messages were read, unchecked: the CRC covers the whole chunk)"
            except FormatError:
                pass
        where = "this chunk" if is_chunk else f"the record at byte {pos}"
        yield self._damage("truncated", f"the file ends inside {where} (a recording that was cut short?){salvaged}; "
                           "the messages after it are missing", offset=pos, chunks=(number,) if is_chunk else (),
                           stopped=True)


def add_chunk_crcs(path) -> int:
    """Write the ``uncompressed_crc`` of every chunk of an mcap file whose CRC is 0 (in place); returns how many.

    For a file just written by ``rosbags`` (which writes 0: "not set"), so that damage can be detected later.
    """
    path = Path(path)
    patched = 0
    with open(path, "r+b") as f:
        buf = mmap.mmap(f.fileno(), 0)
        try:
            if buf[:len(MAGIC)] != MAGIC:
                raise FormatError(f"{path}: not an mcap file")
            pos, n = len(MAGIC), len(buf)
            while pos + RECORD_HEADER <= n:
                op = buf[pos]
                (length,) = struct.unpack_from("<Q", buf, pos + 1)
                end = pos + RECORD_HEADER + length
                if op in (OP_DATA_END, OP_FOOTER) or end > n:
                    break
                if op == OP_CHUNK:
                    body = _Fields(buf, pos + RECORD_HEADER, end, f"{path}: chunk at byte {pos}")
                    body.u64("start time")
                    body.u64("end time")
                    size, crc = body.u64("uncompressed size"), body.u32("uncompressed crc")
                    compression = body.string("compression")
                    data = body.raw(body.u64("records length"), "records")
                    if crc == 0:
                        raw = DECOMPRESSORS[compression](data, size)
                        struct.pack_into("<I", buf, pos + CHUNK_CRC_AT, crc32(raw))
                        patched += 1
                pos = end
            buf.flush()
        finally:
            buf.close()
    return patched


__all__ = ["Channel", "ChunkEntry", "FormatError", "McapFile", "RawMessage", "Summary", "add_chunk_crcs"]

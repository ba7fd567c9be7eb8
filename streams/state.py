"""Checkpoints: one Kafka partition's worker state, as records of the compacted state topic.

A checkpoint is the state of one input partition (:meth:`FrameProcessor.snapshot`) and the
next input offset it corresponds to. :func:`encode_state` packs that plain data into one
binary blob: a JSON header in which every NumPy array (the window columns) is replaced by a
reference to its raw bytes, which follow. It is 40-60x faster than JSON for windows of
thousands of tags, and it is versioned: :func:`decode_state` refuses another format.

On the topic (keys are UTF-8), a checkpoint is its blob cut into chunks of
:data:`CHUNK_BYTES` (under Kafka's default 1 MB message size), keyed
``<app>/<partition>/<seq>/<i>``, then a small JSON manifest keyed ``<app>/<partition>``
that names the chunks, the offset and a CRC. Chunks and manifest go to the same state
partition in that order, so a manifest is only ever read after its chunks; a worker killed
half-way leaves orphan chunks that the next checkpoint deletes (tombstones), never a torn
checkpoint. :class:`CheckpointReader` finds the newest complete checkpoint in a state
partition's records read in log order. A tombstone on the manifest key resets the
partition's state (the next owner starts from the committed offset, with empty state).
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.exceptions import StateError, StateVersionError

__all__ = ["CHUNK_BYTES", "FORMAT", "Checkpoint", "CheckpointReader", "checkpoint_records",
           "chunk_key", "decode_state", "encode_state", "manifest_key"]

logger = logging.getLogger(__name__)

FORMAT = 1  # of the blob and of the manifest
MAGIC = b"MSST"
CHUNK_BYTES = 512 * 1024
_HEAD = struct.Struct(">4sHI")  # magic, format, header length
_SCALARS = {str, int, float, bool, type(None)}


def encode_state(doc: Any) -> bytes:
    """Plain data (dicts with str keys, lists, str, numbers, None, NumPy arrays) as bytes."""
    blobs: list[bytes | memoryview] = []

    def walk(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            arr = np.ascontiguousarray(x)
            try:  # the array's own memory: joined below, before anything can change it
                blobs.append(memoryview(arr).cast("B"))  # type: ignore[arg-type]
            except (TypeError, ValueError):  # a dtype the buffer protocol cannot carry
                blobs.append(arr.tobytes())
            return {"$nd": [len(blobs) - 1, arr.dtype.str, list(arr.shape)]}
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            if set(map(type, x)) <= _SCALARS:  # names, counters: nothing inside to convert
                return x
            return [walk(v) for v in x]
        return x

    header = json.dumps({"doc": walk(doc), "sizes": [len(b) for b in blobs]},
                        separators=(",", ":")).encode()
    return b"".join([_HEAD.pack(MAGIC, FORMAT, len(header)), header, *blobs])


def decode_state(data: bytes) -> Any:
    """The inverse of :func:`encode_state` (arrays are writable copies)."""
    if len(data) < _HEAD.size or data[:4] != MAGIC:
        raise StateError(f"not a millstream state blob (starts with {data[:8]!r})")
    _, fmt, n = _HEAD.unpack_from(data)
    if fmt != FORMAT:
        raise StateVersionError("the checkpoint", f"format {fmt}", f"format {FORMAT}")
    head = json.loads(data[_HEAD.size:_HEAD.size + n])
    starts = np.cumsum([_HEAD.size + n, *head["sizes"]]).tolist()
    view = memoryview(data)

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            ref = x.get("$nd")
            if ref is not None and len(x) == 1:
                i, dtype, shape = ref
                raw = view[starts[i]:starts[i + 1]]
                return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(head["doc"])


def manifest_key(app_id: str, partition: int) -> bytes:
    return f"{app_id}/{partition}".encode()


def chunk_key(app_id: str, partition: int, seq: int, i: int) -> bytes:
    return f"{app_id}/{partition}/{seq}/{i}".encode()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One partition's state (an :func:`encode_state` blob) and the next input offset it
    corresponds to. ``seq`` numbers a partition's checkpoints, upwards."""

    app_id: str
    partition: int
    seq: int
    offset: int
    blob: bytes
    taken_at_ms: int

    @property
    def n_chunks(self) -> int:
        return max(1, -(-len(self.blob) // CHUNK_BYTES))

    def chunks(self) -> list[memoryview]:
        """Views of the blob, not copies: a checkpoint of hundreds of MB is not held twice
        while Kafka takes it (the producer copies each into its batch)."""
        view = memoryview(self.blob)
        return [view[i * CHUNK_BYTES:(i + 1) * CHUNK_BYTES] for i in range(self.n_chunks)]

    def chunk_keys(self) -> list[bytes]:
        """The keys of its chunks: stale once the next checkpoint is written."""
        return [chunk_key(self.app_id, self.partition, self.seq, i)
                for i in range(self.n_chunks)]

    def manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "app_id": self.app_id, "partition": self.partition,
                "seq": self.seq, "offset": self.offset, "chunks": self.n_chunks,
                "bytes": len(self.blob), "crc32": zlib.crc32(self.blob),
                "taken_at_ms": self.taken_at_ms}


def checkpoint_records(ck: Checkpoint, stale: Iterable[bytes] = ()) -> list[
        tuple[bytes, bytes | memoryview | None]]:
    """The records that write ``ck``: its chunks, its manifest, then tombstones for the
    ``stale`` chunk keys (the previous checkpoint's, orphans of a torn write)."""
    out: list[tuple[bytes, bytes | memoryview | None]] = list(
        zip(ck.chunk_keys(), ck.chunks(), strict=True))
    out.append((manifest_key(ck.app_id, ck.partition),
                json.dumps(ck.manifest(), separators=(",", ":")).encode()))
    mine = {k for k, _ in out}
    out += [(k, None) for k in stale if k not in mine]
    return out


@dataclass
class CheckpointReader:
    """Feed it a state partition's records in log order (``add``); ``result()`` is the
    newest complete checkpoint of (``app_id``, ``partition``), ``stale`` the chunk keys
    no longer needed. Memory holds at most the chunks newer than the last manifest seen."""

    app_id: str
    partition: int
    where: str = "the state topic"  # for errors: topic and partition read
    _manifest: dict[str, Any] | None = None
    _chunks: dict[int, dict[int, bytes]] = field(default_factory=dict)  # seq -> i -> bytes
    _keys: set[bytes] = field(default_factory=set)  # live chunk keys

    def add(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        mkey = manifest_key(self.app_id, self.partition)
        if key == mkey:
            self._manifest = None if value is None else self._parse(value)
            if self._manifest is not None:
                seq = int(self._manifest["seq"])
                self._chunks = {s: c for s, c in self._chunks.items() if s >= seq}
            return
        prefix = mkey + b"/"
        if not key.startswith(prefix):
            return
        seq_s, _, i_s = key[len(prefix):].decode().partition("/")
        seq, i = int(seq_s), int(i_s)
        if value is None:
            self._keys.discard(key)
            self._chunks.get(seq, {}).pop(i, None)
            return
        self._keys.add(key)
        self._chunks.setdefault(seq, {})[i] = value

    def _parse(self, value: bytes) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(value)
        except ValueError as exc:
            raise StateError(f"the checkpoint manifest of partition {self.partition} in "
                             f"{self.where} is not JSON ({exc}): {value[:80]!r}") from exc
        if doc.get("format") != FORMAT:
            raise StateVersionError(
                f"the checkpoint of partition {self.partition} in {self.where}",
                f"format {doc.get('format')}", f"format {FORMAT}")
        return doc

    def result(self) -> Checkpoint | None:
        m = self._manifest
        if m is None:
            return None
        seq = int(m["seq"])
        parts = self._chunks.get(seq, {})
        missing = [i for i in range(int(m["chunks"])) if i not in parts]
        if missing:
            raise StateError(
                f"checkpoint {seq} of partition {self.partition} in {self.where} lacks "
                f"chunks {missing[:5]} of {m['chunks']}: the topic lost records it should "
                "keep (is it compacted, not deleted by retention?)")
        blob = b"".join(parts[i] for i in range(int(m["chunks"])))
        if len(blob) != int(m["bytes"]) or zlib.crc32(blob) != int(m["crc32"]):
            raise StateError(f"checkpoint {seq} of partition {self.partition} in "
                             f"{self.where} is corrupt (size or CRC-32 differs)")
        return Checkpoint(self.app_id, self.partition, seq, int(m["offset"]), blob,
                          int(m["taken_at_ms"]))

    @property
    def stale(self) -> list[bytes]:
        """Chunk keys not part of the newest checkpoint: tombstone them."""
        seq = None if self._manifest is None else int(self._manifest["seq"])
        keep = b"/%d/" % seq if seq is not None else None
        prefix = manifest_key(self.app_id, self.partition)
        return sorted(k for k in self._keys
                      if keep is None or not k.startswith(prefix + keep))

"""Checkpoints as bytes and records: the state codec, chunking, and finding the newest
complete checkpoint in a state partition's log (torn writes, tombstones, corruption)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from schemas.catalog import Catalog
from schemas.topics import Topics
from streams import state as state_mod
from streams.app import create_app
from streams.exceptions import StateError, StateVersionError, StreamsError
from streams.state import (
    Checkpoint,
    CheckpointReader,
    checkpoint_records,
    decode_state,
    encode_state,
    manifest_key,
)


def test_codec_round_trips_plain_data_and_arrays() -> None:
    doc: dict[str, Any] = {"a": [1, 2.5, None, "x", True], "nested": {"k": [[1, 2], []]},
           "f": np.array([1.0, np.inf, -np.inf, np.nan]),
           "i": np.arange(6, dtype=np.int64).reshape(2, 3), "empty": np.zeros(0, np.int8)}
    back = decode_state(encode_state(doc))
    assert back["a"] == doc["a"] and back["nested"] == doc["nested"]
    for name in ("f", "i", "empty"):
        assert back[name].dtype == doc[name].dtype and back[name].shape == doc[name].shape
        np.testing.assert_array_equal(back[name], doc[name])
    back["i"][0, 0] = 99  # writable: windows are updated in place after a restore


def test_codec_refuses_other_formats_and_garbage() -> None:
    blob = bytearray(encode_state({"x": 1}))
    blob[4:6] = (7).to_bytes(2, "big")
    with pytest.raises(StateVersionError, match=r"format 7.*format 1"):
        decode_state(bytes(blob))
    with pytest.raises(StateError, match="not a millstream state blob"):
        decode_state(b'{"json": true}')


def _ck(seq: int, blob: bytes, offset: int = 100, partition: int = 2) -> Checkpoint:
    return Checkpoint("app", partition, seq, offset, blob, taken_at_ms=5)


def _read(records: list[tuple[bytes, bytes | memoryview | None]], partition: int = 2,
          ) -> CheckpointReader:
    """Records as a consumer reads them back from Kafka: bytes."""
    r = CheckpointReader("app", partition)
    for k, v in records:
        r.add(k, None if v is None else bytes(v))
    return r


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(state_mod, "CHUNK_BYTES", 10)
    return 10


def test_a_checkpoint_is_chunks_then_its_manifest(small_chunks: int) -> None:
    blob = bytes(range(35))
    recs = checkpoint_records(_ck(1, blob))
    assert [k for k, _ in recs] == [b"app/2/1/0", b"app/2/1/1", b"app/2/1/2", b"app/2/1/3",
                                    b"app/2"]
    manifest = json.loads(bytes(recs[-1][1] or b""))
    assert (manifest["chunks"], manifest["bytes"], manifest["offset"]) == (4, 35, 100)
    got = _read(recs).result()
    assert got is not None and got.blob == blob and (got.seq, got.offset) == (1, 100)


def test_the_newest_complete_checkpoint_wins_and_a_torn_write_is_ignored(
        small_chunks: int) -> None:
    first = checkpoint_records(_ck(1, b"A" * 25, offset=10))
    assert _ck(1, b"A" * 25).chunk_keys() == [b"app/2/1/0", b"app/2/1/1", b"app/2/1/2"]
    second = checkpoint_records(_ck(2, b"B" * 15, offset=20),
                                stale=_ck(1, b"A" * 25).chunk_keys())
    torn = checkpoint_records(_ck(3, b"C" * 30, offset=30))[:2]  # killed before its manifest
    r = _read(first + second + torn)
    got = r.result()
    assert got is not None and (got.seq, got.offset, got.blob) == (2, 20, b"B" * 15)
    # the first checkpoint's chunks were tombstoned by the second; the torn ones are stale
    assert r.stale == [b"app/2/3/0", b"app/2/3/1"]
    third = checkpoint_records(_ck(3, b"D" * 5, offset=40), stale=r.stale)
    assert [k for k, v in third if v is None] == [b"app/2/3/1"]  # not its own chunk 0
    assert (_read(first + second + torn + third).result() or _ck(0, b"")).blob == b"D" * 5


def test_other_apps_and_partitions_are_not_mixed_in(small_chunks: int) -> None:
    mine = checkpoint_records(_ck(4, b"mine", partition=1))
    other_part = checkpoint_records(_ck(9, b"theirs", partition=11))
    other_app = [(k.replace(b"app/", b"other/"), v)
                 for k, v in checkpoint_records(_ck(7, b"x", partition=1))]
    got = _read(mine + other_part + other_app, partition=1).result()
    assert got is not None and got.blob == b"mine" and got.seq == 4
    assert _read(other_part + other_app, partition=1).result() is None


def test_a_tombstone_on_the_manifest_resets_the_partition() -> None:
    recs = checkpoint_records(_ck(1, b"state"))
    assert _read([*recs, (manifest_key("app", 2), None)]).result() is None


def test_missing_chunks_corruption_and_other_formats_are_clear_errors(
        small_chunks: int) -> None:
    recs = checkpoint_records(_ck(1, b"x" * 25))
    with pytest.raises(StateError, match=r"lacks chunks \[1\] of 3"):
        _read([recs[0], recs[2], recs[3]]).result()
    bad = [(k, v if k != b"app/2/1/1" else b"y" * 10) for k, v in recs]
    with pytest.raises(StateError, match="corrupt"):
        _read(bad).result()
    manifest = json.loads(bytes(recs[-1][1] or b""))
    manifest["format"] = 2
    with pytest.raises(StateVersionError, match="format 2"):
        _read([*recs[:-1], (recs[-1][0], json.dumps(manifest).encode())])


def test_the_worker_checks_its_guarantee_and_interval(catalog: Catalog) -> None:
    kw: dict[str, Any] = {"bootstrap": "127.0.0.1:1", "topics": Topics("t")}
    with pytest.raises(StreamsError, match="'exactly-once' is not known"):
        create_app(catalog, guarantee="exactly-once", **kw)
    with pytest.raises(StateError, match="exactly_once needs checkpoints"):
        create_app(catalog, guarantee="exactly_once", checkpoint_interval_s=0, **kw)
    app = create_app(catalog, guarantee="exactly_once", **kw)
    assert app.keeper.outputs.transactional  # type: ignore[attr-defined]

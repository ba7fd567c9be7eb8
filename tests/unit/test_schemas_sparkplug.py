"""The Sparkplug B codec: generated code is current, topics, values by datatype."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.exceptions import ContractError
from schemas.sparkplug import (
    DataType,
    Payload,
    build_payload,
    decode_payload,
    metric_properties,
    metric_value,
    new_metric,
    parse_topic,
    state_payload,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    """Regenerate with the pinned toolchain: the committed files must be identical, so the
    generated code is never edited by hand and never stale."""
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{SCHEMAS}", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", str(SCHEMAS / "sparkplug_b.proto")],
        check=True, capture_output=True)
    for name in ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi"):
        assert (tmp_path / name).read_bytes() == (SCHEMAS / name).read_bytes(), (
            f"schemas/{name} differs from what protoc generates from sparkplug_b.proto; "
            "regenerate it (command at the top of the .proto)")


def test_topics() -> None:
    t = parse_topic("spBv1.0/plant1/DDATA/edge-01/press-02")
    assert t is not None
    assert (t.group, t.message_type, t.edge_node, t.device) == ("plant1", "DDATA", "edge-01",
                                                               "press-02")
    assert str(t) == "spBv1.0/plant1/DDATA/edge-01/press-02"
    n = parse_topic("spBv1.0/plant1/NBIRTH/edge-01")
    assert n is not None and n.device is None and n.node_key == "plant1/edge-01"
    assert parse_topic("spBv1.0/STATE/millstream") is None
    assert parse_topic("plant1/cnc/temp") is None
    for bad in ("spBv1.0/plant1/DDATA/edge-01", "spBv1.0/plant1/NDATA/e/d",
                "spBv1.0/plant1/XDATA/e", "spBv1.0/plant1//e"):
        with pytest.raises(ContractError) as err:
            parse_topic(bad)
        assert err.value.reason == "sparkplug-topic"


def test_state_payload_is_the_3_0_json() -> None:
    assert state_payload(True, 5) == b'{"online": true, "timestamp": 5}'


def test_malformed_payload() -> None:
    with pytest.raises(ContractError) as err:
        decode_payload(b"\xff\xff\xff\xff not protobuf")
    assert err.value.reason == "sparkplug-malformed"


def _roundtrip(dt: DataType, value: object) -> Payload.Metric:
    raw = build_payload([new_metric("m", 1, dt, value, properties={"engUnit": "bar"})],
                        timestamp=10, seq=3)
    p = decode_payload(raw)
    assert (p.timestamp, p.seq) == (10, 3)
    return p.metrics[0]


@given(st.sampled_from([(DataType.Int8, 8), (DataType.Int16, 16), (DataType.Int32, 32),
                        (DataType.Int64, 64)]), st.data())
def test_signed_integers_roundtrip(kind: tuple[DataType, int], data: st.DataObject) -> None:
    dt, bits = kind
    v = data.draw(st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
    assert metric_value(_roundtrip(dt, v), dt).value == float(v)


def test_int8_sign_extended_from_either_width() -> None:
    """-1 as Int8 may arrive as 255 or as 0xFFFFFFFF: both are -1."""
    for raw in (255, 0xFFFFFFFF):
        m = Payload.Metric(int_value=raw, datatype=DataType.Int8)
        assert metric_value(m, DataType.Int8).value == -1.0


def test_values_by_type() -> None:
    assert metric_value(_roundtrip(DataType.UInt32, 4_000_000_000), DataType.UInt32).value == 4e9
    assert metric_value(_roundtrip(DataType.Double, 2.5), DataType.Double).value == 2.5
    assert metric_value(_roundtrip(DataType.Float, 0.5), DataType.Float).value == 0.5
    assert metric_value(_roundtrip(DataType.Boolean, True), DataType.Boolean).value == 1.0
    assert metric_value(_roundtrip(DataType.String, "ok"), DataType.String).text == "ok"
    m = _roundtrip(DataType.Double, None)
    assert metric_value(m, DataType.Double).problem == "null value (is_null)"
    assert metric_properties(m) == {"engUnit": "bar"}
    nan = Payload.Metric(double_value=float("nan"))
    assert metric_value(nan, DataType.Double).problem is not None
    blob = Payload.Metric(bytes_value=b"x")
    assert "not bridged" in (metric_value(blob, DataType.Bytes).problem or "")
    assert metric_value(Payload.Metric(), DataType.Double).problem is not None

"""Setpoints as Modbus registers: the executor's policy on top of the catalog's encoding."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.catalog import load_catalog
from schemas.events import Command
from schemas.modbus import decode
from sinks.devices import setpoint_words
from sinks.executor import matches
from sinks.safety import SafetyGateway


def test_setpoints_use_the_catalogs_encoding() -> None:
    assert setpoint_words(160.5, "float32") == [0x4320, 0x8000]
    assert setpoint_words(-2, "int16") == [0xFFFE]


@pytest.mark.parametrize(("value", "kind"), [(70000, "uint16"), (-1, "uint16"), (40000, "int16")])
def test_out_of_range_integers_are_refused(value: float, kind: str) -> None:
    with pytest.raises(ValueError, match=kind):
        setpoint_words(value, kind)


def test_bool_registers_cannot_hold_a_setpoint() -> None:
    with pytest.raises(ValueError, match="bool"):
        setpoint_words(1.0, "bool")


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_float32_precision_is_within_the_readback_tolerance(value: float) -> None:
    assert matches(value, decode(setpoint_words(value, "float32"), "float32"))


def test_readback_tolerance() -> None:
    assert matches(8000.0, 8007.9) and not matches(8000.0, 8008.1)
    assert matches(0.0, 0.001) and not matches(0.0, 0.0011)
    assert not matches(5.0, math.inf)


def test_the_gateway_refuses_values_the_register_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(textwrap.dedent("""\
        enterprise: e
        site: s
        sources: [{name: plc, protocol: modbus, endpoint: "127.0.0.1:502"}]
        machines:
          - {name: m, area: a, line: l, source: plc, tags: [
              {name: sp, kind: setpoint, min: -5000, max: 5000,
               register: {table: holding, address: 0, type: int16, scale: 0.1}},
              {name: heater, kind: setpoint, min: 0, max: 1,
               register: {table: holding, address: 1, type: bit(4)}}]}
        """))
    catalog = load_catalog(path)
    gateway = SafetyGateway(catalog)

    def check(tag: str, value: float) -> str:
        return gateway.check(Command(
            command_id=f"c-{tag}-{value}", rule="r", machine="e/s/a/l/m", setpoint=tag,
            value=value, reason="test", issued_at=0, expires_at=10**15), 1).reason

    assert check("m/sp", 3276.7) == "ok"
    assert "does not fit its int16 register (scale 0.1" in check("m/sp", 3276.8)
    assert check("m/heater", 1.0) == "ok"
    assert "takes 0 or 1, not 0.5" in check("m/heater", 0.5)

"""Setpoints as Modbus registers: the executor's policy on top of the catalog's encoding."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.modbus import decode
from sinks.devices import setpoint_words
from sinks.executor import matches


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

"""The safety gateway: one test per rule, hypothesis on the limit and rate boundaries."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.catalog import Catalog, load_catalog
from schemas.events import Command
from sinks.safety import RATE_WINDOW_MS, SafetyGateway

NOW = 1_700_000_000_000
CNC = "acme/plant1/machining/line1/cnc-01"
SPINDLE_SP = f"{CNC}/spindle_speed_sp"  # setpoint, rpm, [1000, 12000]
PRESS = "acme/plant1/forming/line2/press-01"
PRESS_SP = f"{PRESS}/pressure_sp"  # setpoint, bar, [100, 250]

_ids = itertools.count()
PLANT = load_catalog()  # hypothesis tests cannot use function-scoped fixtures


def command(
    setpoint: str = SPINDLE_SP,
    value: float = 5000.0,
    *,
    machine: str = CNC,
    command_id: str | None = None,
    expires_at: int = NOW + 30_000,
) -> Command:
    return Command(
        command_id=command_id or f"cmd-{next(_ids)}",
        rule="spindle-overheat",
        machine=machine,
        setpoint=setpoint,
        value=value,
        reason="test",
        issued_at=NOW - 100,
        expires_at=expires_at,
    )


@pytest.fixture
def gateway(catalog: Catalog) -> SafetyGateway:
    return SafetyGateway(catalog)


def test_a_valid_command_is_allowed(gateway: SafetyGateway) -> None:
    verdict = gateway.check(command(), NOW)
    assert verdict.allowed, verdict.reason
    assert verdict.reason == "ok"


def test_a_modbus_setpoint_is_allowed(gateway: SafetyGateway) -> None:
    assert gateway.check(command(PRESS_SP, 160.0, machine=PRESS), NOW).allowed


def test_short_machine_tag_names_resolve(gateway: SafetyGateway) -> None:
    assert gateway.check(command("cnc-01/spindle_speed_sp"), NOW).allowed


def test_unknown_setpoint_is_refused(gateway: SafetyGateway) -> None:
    verdict = gateway.check(command(f"{CNC}/no_such_tag"), NOW)
    assert not verdict.allowed
    assert verdict.reason.startswith("unknown setpoint")
    assert "no_such_tag" in verdict.reason


def test_a_tag_that_is_not_a_setpoint_is_refused(gateway: SafetyGateway) -> None:
    verdict = gateway.check(command(f"{CNC}/spindle_temp", 50.0), NOW)
    assert not verdict.allowed
    assert verdict.reason.startswith("not a setpoint")
    assert "analog" in verdict.reason


def test_value_above_max_is_refused_naming_value_and_limits(gateway: SafetyGateway) -> None:
    verdict = gateway.check(command(value=20000.0), NOW)
    assert not verdict.allowed
    assert verdict.reason.startswith("out of limits")
    assert "20000" in verdict.reason and "[1000, 12000]" in verdict.reason
    assert "rpm" in verdict.reason


def test_value_below_min_is_refused(gateway: SafetyGateway) -> None:
    verdict = gateway.check(command(PRESS_SP, 99.9, machine=PRESS), NOW)
    assert not verdict.allowed
    assert "99.9" in verdict.reason and "[100, 250]" in verdict.reason


def test_non_finite_value_is_refused(gateway: SafetyGateway) -> None:
    assert not gateway.check(command(value=float("nan")), NOW).allowed
    assert not gateway.check(command(value=float("inf")), NOW).allowed


def test_expired_command_is_refused(gateway: SafetyGateway) -> None:
    verdict = gateway.check(command(expires_at=NOW - 1), NOW)
    assert not verdict.allowed
    assert verdict.reason.startswith("expired")
    assert "1 ms later" in verdict.reason


def test_a_command_received_exactly_at_expiry_is_allowed(gateway: SafetyGateway) -> None:
    assert gateway.check(command(expires_at=NOW), NOW).allowed


def test_machine_mismatch_is_refused(gateway: SafetyGateway) -> None:
    verdict = gateway.check(command(machine=PRESS), NOW)
    assert not verdict.allowed
    assert verdict.reason.startswith("machine mismatch")
    assert CNC in verdict.reason and PRESS in verdict.reason


def test_rate_limit_per_setpoint_per_minute(gateway: SafetyGateway) -> None:
    for i in range(6):
        assert gateway.check(command(), NOW + i).allowed
    verdict = gateway.check(command(), NOW + 10)
    assert not verdict.allowed
    assert verdict.reason.startswith("rate limit")
    assert "6/min" in verdict.reason
    # another setpoint has its own budget
    assert gateway.check(command(PRESS_SP, 160.0, machine=PRESS), NOW + 10).allowed
    # a minute after the first, one slot is free again
    later = NOW + RATE_WINDOW_MS
    assert gateway.check(command(expires_at=later + 1), later).allowed
    assert not gateway.check(command(expires_at=later + 1), later).allowed


def test_refused_commands_do_not_use_the_rate_budget(catalog: Catalog) -> None:
    gateway = SafetyGateway(catalog, max_rate_per_setpoint=1)
    assert not gateway.check(command(value=1.0), NOW).allowed
    assert gateway.check(command(), NOW).allowed


def test_rate_limit_must_be_positive(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SafetyGateway(catalog, max_rate_per_setpoint=0)


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_limits_boundary(value: float) -> None:
    gateway = SafetyGateway(PLANT, max_rate_per_setpoint=10**9)
    verdict = gateway.check(command(value=value), NOW)
    assert verdict.allowed == (1000 <= value <= 12000), verdict.reason


@given(
    limit=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.integers(min_value=0, max_value=30_000), min_size=1, max_size=60),
)
def test_rate_limit_never_exceeded_in_any_minute(limit: int, gaps: list[int]) -> None:
    gateway = SafetyGateway(PLANT, max_rate_per_setpoint=limit)
    allowed: list[int] = []
    t = NOW
    for gap in gaps:
        t += gap
        if gateway.check(command(expires_at=t + 1), t).allowed:
            allowed.append(t)
    for i, start in enumerate(allowed):
        in_window = [a for a in allowed[i:] if a < start + RATE_WINDOW_MS]
        assert len(in_window) <= limit
    # and the gateway is not stricter than the rule: the first `limit` always pass
    assert len(allowed) >= min(limit, len(gaps))


def test_an_integer_too_big_for_a_float_is_refused_not_raised(gateway: SafetyGateway) -> None:
    # JSON integers are unbounded: Command.decode accepts 10**400 as a number
    verdict = gateway.check(command(value=10**400), NOW)
    assert not verdict.allowed and verdict.reason.startswith("out of limits")

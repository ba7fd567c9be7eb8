"""Signing, freshness, the kill switch, the two-person rule and the step/rate checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.catalog import DEFAULT_CATALOG, Catalog, load_catalog
from schemas.control import ControlRecord
from schemas.events import Command
from schemas.signing import (
    Signer,
    SigningError,
    TrustedKeys,
    canonical_bytes,
    generate_key,
    verify_doc,
)
from sinks.approvals import Approvals
from sinks.authn import Authenticator
from sinks.killswitch import KillSwitches
from sinks.safety import SafetyGateway

NOW = 1_700_000_000_000
CNC = "acme/plant1/machining/line1/cnc-01"
SP = f"{CNC}/spindle_speed_sp"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for who in ("alice", "bob"):
        generate_key(who, d, d / "trusted")
    return d


def signer(keys: Path, who: str) -> Signer:
    return Signer.from_file(who, keys / f"{who}.key")


def command(cid: str = "c1", issued: int = NOW, ttl: int = 60_000) -> Command:
    return Command(cid, "manual", CNC, SP, 5000.0, "why", issued, issued + ttl)


def test_canonical_bytes_ignore_key_order_and_the_signature() -> None:
    a = canonical_bytes({"b": 1, "a": "é", "signature": "x"})
    assert a == canonical_bytes({"a": "é", "b": 1}) == '{"a":"é","b":1}'.encode()


def test_a_signature_covers_every_field(keys: Path) -> None:
    trusted = TrustedKeys(keys / "trusted")
    doc = signer(keys, "alice").sign(command().to_dict())
    assert verify_doc(doc, trusted) is None
    for field, value in (("value", 5001.0), ("issuer", "bob"), ("expires_at", NOW * 2)):
        why = verify_doc({**doc, field: value}, trusted)
        assert why is not None and why.startswith("bad signature"), field
    assert verify_doc({**doc, "signature": "!!"}, trusted) is not None


def test_signer_keys_come_from_base64_and_are_never_shown(keys: Path) -> None:
    with pytest.raises(SigningError, match="not base64") as err:
        Signer.from_base64("alice", "c2VjcmV0LXNlY3JldA==")
    assert "c2VjcmV0" not in str(err.value)
    assert "BEGIN" not in repr(signer(keys, "alice"))
    with pytest.raises(SigningError, match="exists"):
        generate_key("alice", keys, keys / "trusted")
    with pytest.raises(SigningError, match="not valid"):
        Signer.local("../etc/passwd", keys)


def test_freshness_window(keys: Path) -> None:
    authn = Authenticator(TrustedKeys(keys / "trusted"), max_ttl_ms=60_000, max_skew_ms=1000)
    alice = signer(keys, "alice")

    def check(c: Command, now: int) -> str:
        return authn.check(json.loads(c.signed_by(alice).encode()), c, now).reason

    assert check(command(), NOW) == "ok"
    assert check(command(issued=NOW + 5000), NOW).startswith("not fresh")
    assert "TTL" in check(command(ttl=120_000), NOW)
    assert check(command(), NOW + 62_000).startswith("replay")


def test_kill_switch_on_from_anyone_off_only_signed(keys: Path) -> None:
    switches = KillSwitches()
    switches.apply(ControlRecord("kill-switch", "global", True, "fire drill", NOW), False)
    assert "fire drill" in (switches.refusal(CNC) or "")
    switches.apply(ControlRecord("kill-switch", "global", False, "forged", NOW), False)
    assert switches.refusal(CNC) is not None  # an unsigned "off" is ignored
    switches.apply(ControlRecord("kill-switch", "global", False, "done", NOW), True)
    assert switches.refusal(CNC) is None
    switches.apply(ControlRecord("kill-switch", CNC, True, "lockout", NOW), False)
    assert switches.refusal(CNC) is not None and switches.refusal("other/machine") is None


def test_two_person_rule(keys: Path) -> None:
    approvals = Approvals(TrustedKeys(keys / "trusted"))
    c = command(ttl=10_000).signed_by(signer(keys, "alice"))
    approvals.park(c)
    assert approvals.decide(NOW) == []  # waits

    def approve(who: str) -> None:
        rec = ControlRecord("approval", "c1", True, "ok", NOW).signed_by(signer(keys, who))
        approvals.on_record(rec, "approval", "c1")

    approve("alice")  # the issuer cannot approve their own command
    assert approvals.decide(NOW) == []
    [expired] = approvals.decide(NOW + 20_000)
    assert expired.approved_by is None and "own command" in (expired.refusal or "")
    approve("bob")
    [ok] = approvals.decide(NOW + 1)
    assert ok.approved_by == "bob" and ok.command == c


def test_pending_commands_reload_only_when_authentic(keys: Path) -> None:
    approvals = Approvals(TrustedKeys(keys / "trusted"))
    doc = signer(keys, "alice").sign(command().to_dict())
    approvals.on_record(ControlRecord("pending", "c1", True, "", NOW, json.dumps(doc)),
                        "pending", "c1")
    assert approvals.is_pending("c1")
    forged = json.dumps({**doc, "value": 11000.0})
    approvals.on_record(ControlRecord("pending", "c2", True, "", NOW, forged), "pending", "c2")
    assert not approvals.is_pending("c2")


@pytest.fixture(scope="module")
def plant() -> Catalog:
    return load_catalog()


def test_rate_limit_per_machine(plant: Catalog) -> None:
    gateway = SafetyGateway(plant, max_rate_per_setpoint=100, max_rate_per_machine=3)
    assert all(gateway.check(command(f"c{i}"), NOW + i).allowed for i in range(3))
    verdict = gateway.check(command("c9"), NOW + 5)
    assert not verdict.allowed and verdict.check == "rate" and CNC in verdict.reason


def test_step_and_rate_of_change(tmp_path: Path) -> None:
    text = DEFAULT_CATALOG.read_text().replace(
        "max_step: 4000,", "max_step: 4000, max_rate_per_s: 100,")
    (tmp_path / "plant.yaml").write_text(text)
    gateway = SafetyGateway(load_catalog(tmp_path / "plant.yaml"))
    assert gateway.check_change(SP, 5000.0, 8000.0, None, NOW).allowed
    step = gateway.check_change(SP, 3000.0, 8000.0, None, NOW)
    assert step.check == "step" and "5000 rpm" in step.reason and "4000" in step.reason
    fast = gateway.check_change(SP, 7000.0, 8000.0, NOW - 2000, NOW)
    assert fast.check == "rate_of_change" and "500 rpm/s" in fast.reason
    assert gateway.check_change(SP, 7000.0, 8000.0, NOW - 10_000, NOW).allowed

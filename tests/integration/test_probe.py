"""``millstream probe modbus`` against a real pymodbus server: the engineer's view."""

from __future__ import annotations

import asyncio
import re
import struct

import pytest

from millstream import cli
from millstream.stack.kafka import free_port
from tests.integration.modbus_servers import device, serve, words

pytestmark = pytest.mark.integration


def probe(argv: list[str], holding: dict[int, int] | None = None) -> int:
    """Run the CLI in a thread while the server runs in this loop (the CLI owns its loop)."""
    async def go() -> int:
        port = free_port()
        server = await serve([device(1, holding=holding or {}, size=200)], port)
        try:
            args = [a.replace("PORT", str(port)) for a in argv]
            return await asyncio.to_thread(cli.main, args)
        finally:
            await server.shutdown()

    return asyncio.run(go())


def test_the_cdab_column_shows_a_word_swapped_float(capsys: pytest.CaptureFixture[str]) -> None:
    value = 123.456
    cdab = words(">f", value, "CDAB")
    assert cdab == list(struct.unpack(">HH", struct.pack(">f", value)))[::-1]
    holding = {100: cdab[0], 101: cdab[1], 102: 0x4142, 103: 0x4344}
    assert probe(["probe", "modbus", "127.0.0.1:PORT", "--unit", "1", "--address", "100",
                  "--count", "4"], holding) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("type"))
    row = next(line for line in lines if line.startswith("float32"))
    columns = [m.start() for m in re.finditer(r"ABCD|BADC|CDAB|DCBA", header)]
    cells = [row[a:b].strip() for a, b in zip(columns, [*columns[1:], None], strict=True)]
    assert dict(zip(("ABCD", "BADC", "CDAB", "DCBA"), cells, strict=True))["CDAB"] == "123.456"
    assert cells[0] != "123.456"
    assert f"100=0x{cdab[0]:04X}  101=0x{cdab[1]:04X}" in out


def test_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    # the device refuses addresses past its table
    assert probe(["probe", "modbus", "127.0.0.1:PORT", "--address", "198", "--count", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "illegal data address (exception 2)" in err[0], err
    assert "holding registers 198..201, unit 1" in err[0]
    # nobody listens
    port = free_port()
    assert cli.main(["probe", "modbus", f"127.0.0.1:{port}", "--timeout", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot reach Modbus device at 127.0.0.1:{port}" in err[0], err

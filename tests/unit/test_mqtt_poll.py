"""The poll()-based select that paho's loop uses (connectors/mqtt_poll.py)."""

from __future__ import annotations

import os
import select
import socket

import paho.mqtt.client as paho_client
import pytest

from connectors.mqtt_poll import poll_select, use_poll


def test_reports_readable_and_writable_like_select() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert poll_select([a], [], [], 0) == ([], [], [])
        assert poll_select([a], [b], [], 0) == ([], [b], [])
        b.send(b"x")
        assert poll_select([a, b], [], [], 1.0) == ([a], [], [])


def test_a_descriptor_above_1024_works_where_select_fails() -> None:
    a, b = socket.socketpair()
    high = os.dup2(a.fileno(), 1500)
    with socket.socket(fileno=high) as h, a, b:
        b.send(b"x")
        with pytest.raises(ValueError):
            select.select([h], [], [], 0)
        assert poll_select([h], [h], [], 1.0) == ([h], [h], [])


def test_a_closed_socket_or_none_raises_what_paho_expects() -> None:
    a, b = socket.socketpair()
    b.close()
    a.close()
    with pytest.raises(ValueError):  # fileno() is -1: paho reports "connection lost"
        poll_select([a], [], [], 0)
    with pytest.raises(TypeError):  # paho: the socket is gone
        poll_select([None], [], [], 0)


def test_a_peer_that_hangs_up_makes_the_socket_readable() -> None:
    a, b = socket.socketpair()
    with a:
        b.close()
        assert poll_select([a], [], [], 1.0)[0] == [a]


def test_use_poll_replaces_paho_select_only() -> None:
    use_poll()
    use_poll()
    assert paho_client.select.select is poll_select
    assert select.select is not poll_select

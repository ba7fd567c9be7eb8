"""The embedded MQTT broker: Debian's Mosquitto, one process on loopback, owned by us.

Lifecycle: :func:`find_mosquitto` locates the binary (PATH, then /usr/sbin, where Debian
puts it); :class:`EmbeddedMosquitto` writes a config (a free loopback port, persistence in
its data directory), starts the broker, waits until it accepts connections, and stops it
(SIGTERM: Mosquitto saves its persistence file on the way out). ``restart()`` keeps the
data, so persistent sessions and queued QoS 1 messages survive it. No system service is
used or needed.
"""

from __future__ import annotations

import getpass
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from millstream.exceptions import StackError
from millstream.stack.kafka import free_port
from millstream.stack.processes import terminate

__all__ = ["EmbeddedMosquitto", "find_mosquitto", "mosquitto_for"]

logger = logging.getLogger(__name__)

_SBIN = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str:
    """The mosquitto binary; StackError says how to install it."""
    path = shutil.which("mosquitto") or next((p for p in _SBIN if Path(p).is_file()), None)
    if path is None:
        raise StackError("Mosquitto is not installed: the embedded MQTT broker needs it. "
                         "Install it (Debian: apt-get install mosquitto; `make setup` does "
                         "this as root), or point the MQTT sources at your broker.")
    return path


class EmbeddedMosquitto:
    """One Mosquitto broker on 127.0.0.1 with persistence in ``data_dir``.

    ``with EmbeddedMosquitto(data_dir) as m: m.endpoint`` starts on enter, stops on exit.
    """

    def __init__(self, data_dir: Path, port: int | None = None, fresh: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.fresh = fresh
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "mosquitto.log"

    @property
    def endpoint(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "autosave_interval 1",
            # persistent sessions queue what arrives while a client is away: keep all of it
            "max_queued_messages 1000000",
            "max_inflight_messages 100",
            "persistent_client_expiration 1d",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            # as root Mosquitto would switch to the 'mosquitto' user; stay who we are
            f"user {getpass.getuser()}",
            "",
        ]))
        return conf

    def start(self, timeout: float = 20.0) -> str:
        binary = find_mosquitto()
        if self.fresh:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.fresh = False  # a restart keeps the persistence file
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self._config()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"Mosquitto exited with code {self.proc.returncode} while "
                                 f"starting; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                logger.info("Mosquitto up at %s (pid %s)", self.endpoint, self.proc.pid)
                return self.endpoint
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise StackError(f"Mosquitto did not listen on port {self.port} within "
                         f"{timeout:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc, timeout)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port and data."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def __enter__(self) -> EmbeddedMosquitto:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@contextmanager
def mosquitto_for(data_dir: Path, *, port: int | None = None) -> Iterator[EmbeddedMosquitto]:
    """A fresh embedded Mosquitto in ``data_dir`` for the duration of the ``with``."""
    with EmbeddedMosquitto(data_dir, port=port) as broker:
        yield broker

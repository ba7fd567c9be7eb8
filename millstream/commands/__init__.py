"""Subcommands that live in their own module (tools around the stages: browse, probe, trust,
status, and the dashboard).

Each module exposes ``register(add)``: it calls ``add(name, handler, help)`` for each of its
subcommands and adds their arguments to the returned parser. :mod:`millstream.cli` calls
every module listed in ``MODULES``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from types import ModuleType

from millstream.commands import alarm, browse, command, dashboard, probe, status, trust
from millstream.settings import Settings

__all__ = ["MODULES", "Add", "Handler"]

Handler = Callable[[argparse.Namespace, Settings], int]
Add = Callable[[str, Handler, str], argparse.ArgumentParser]

MODULES: list[ModuleType] = [browse, probe, trust, command, status, dashboard, alarm]

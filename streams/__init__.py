"""The stream processing stage: tumbling and hopping windows, River detection, rules → commands.

Faust stays at the edge (:mod:`streams.app`); the logic lives in plain classes that
tests call without a broker.
"""

from streams.assets import AssetWindow
from streams.detect import DETECTOR_NAME, GuardedSAD, WindowDetector, detector_from_catalog
from streams.exceptions import StateError, StateVersionError, StreamsError, WorkerError
from streams.panes import PaneStats
from streams.processor import FrameProcessor, Output
from streams.rules import RuleEngine
from streams.windows import WindowStore

__all__ = [
    "DETECTOR_NAME",
    "AssetWindow",
    "FrameProcessor",
    "GuardedSAD",
    "Output",
    "PaneStats",
    "RuleEngine",
    "StateError",
    "StateVersionError",
    "StreamsError",
    "WindowDetector",
    "WindowStore",
    "WorkerError",
    "detector_from_catalog",
]

"""The stream processing stage: windows, detectors, alarm episodes, rules → commands.

Faust stays at the edge (:mod:`streams.app`); the logic lives in plain classes that
tests call without a broker.
"""

from streams.alarms import AlarmEngine
from streams.assets import AssetWindow
from streams.detect import DETECTOR_NAME, GuardedSAD, WindowDetector, detector_from_catalog
from streams.detection import AssetEvidence, DetectionLayer
from streams.exceptions import (
                                AlarmActionError,
                                StateError,
                                StateVersionError,
                                StreamsError,
                                WorkerError,
)
from streams.panes import PaneStats
from streams.processor import FrameProcessor, Output
from streams.rules import RuleEngine
from streams.windows import WindowStore

__all__ = [
    "DETECTOR_NAME",
    "AlarmActionError",
    "AlarmEngine",
    "AssetEvidence",
    "AssetWindow",
    "DetectionLayer",
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

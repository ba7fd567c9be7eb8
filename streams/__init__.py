"""The stream processing stage: tumbling windows, River anomaly detection, rules → commands.

Faust stays at the edge (:mod:`streams.app`); the logic lives in plain classes that
tests call without a broker.
"""

from streams.detect import DETECTOR_NAME, GuardedSAD, WindowDetector, detector_from_catalog
from streams.exceptions import StreamsError, WorkerError
from streams.processor import FrameProcessor, Output
from streams.rules import RuleEngine
from streams.windows import Partial, TumblingWindows

__all__ = [
    "DETECTOR_NAME",
    "FrameProcessor",
    "GuardedSAD",
    "Output",
    "Partial",
    "RuleEngine",
    "StreamsError",
    "TumblingWindows",
    "WindowDetector",
    "WorkerError",
    "detector_from_catalog",
]

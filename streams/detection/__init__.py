"""The catalog's detectors wired over the worker's sources: per tag, vectorised, and per
machine; anomalies with their drivers, and each machine's window as alarm evidence."""

from streams.detection.layer import STATE_VERSION, AssetEvidence, DetectionLayer
from streams.detection.layout import FEATURES, SourceLayout, WindowMatrix
from streams.detection.runners import AssetRunner, SadRunner, TagRunner, make_detector

__all__ = [
    "FEATURES",
    "STATE_VERSION",
    "AssetEvidence",
    "AssetRunner",
    "DetectionLayer",
    "SadRunner",
    "SourceLayout",
    "TagRunner",
    "WindowMatrix",
    "make_detector",
]

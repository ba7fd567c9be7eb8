"""The contracts every stage shares: topics, message models, the catalog, ClickHouse DDL."""

from schemas.catalog import Catalog, TagInfo, load_catalog
from schemas.events import Aggregate, Anomaly, Command, CommandResult, CommandStatus, DeadLetter
from schemas.exceptions import CatalogError, ContractError, MillstreamError
from schemas.readings import FrameBuilder, Quality, Reading, ReadingFrame
from schemas.topics import Topics

__all__ = [
    "Aggregate",
    "Anomaly",
    "Catalog",
    "CatalogError",
    "Command",
    "CommandResult",
    "CommandStatus",
    "ContractError",
    "DeadLetter",
    "FrameBuilder",
    "MillstreamError",
    "Quality",
    "Reading",
    "ReadingFrame",
    "TagInfo",
    "Topics",
    "load_catalog",
]

"""One error base class for everything cxrbench raises on purpose."""

from __future__ import annotations


class CxrbenchError(Exception):
    """Base class of the project's own errors: the message is meant for a person."""


class DataError(CxrbenchError):
    """A dataset file is missing or malformed; the message names the file, row and problem."""


class PluginError(CxrbenchError):
    """A plugin failed to load, registered something invalid, or broke the model contract."""


class ResultError(CxrbenchError):
    """A result file does not match its schema or its track's definition."""


class ProtocolError(CxrbenchError):
    """An unknown track, or a run configuration that the protocol does not allow."""


class AssetUnavailable(CxrbenchError):
    """An optional local asset (weights, data root) is not present; the rest of a run still goes on."""


class OutputError(CxrbenchError):
    """A folder a run writes to cannot be created or written, or a result there would be overwritten."""

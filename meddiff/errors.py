"""Exceptions with a message a user can act on. The CLI prints ``str(err)`` on one line and exits non-zero."""


class MeddiffError(Exception):
    """Base class: every error meddiff raises on bad input derives from it."""


class ConfigError(MeddiffError):
    """A config value is missing, misspelt or inconsistent."""


class InputImageError(MeddiffError):
    """An image or mask file is unreadable, truncated, of the wrong dimensionality or not CT."""


class GeometryError(MeddiffError):
    """Two images that must share a grid (image/mask, low/full dose) do not."""


class DatasetMissingError(MeddiffError):
    """A dataset is not on disk; the message says where to get it and where to put it."""


class DownloadError(MeddiffError):
    """A transfer failed, was truncated, or its checksum does not match."""


class UnsafeArchiveError(MeddiffError):
    """An archive member would escape the extraction folder (path traversal, links, devices)."""


class WeightsMissingError(MeddiffError):
    """Model weights (TotalSegmentator, MedicalNet, MAISI) are not installed; the message says how."""

"""Exceptions raised by spinalquant.

Every error names what went wrong, where (file, channel, config key) and, where
possible, how to fix it, so that a failed image in a batch run can be understood
from ``summary.csv`` alone.
"""

from __future__ import annotations


class SpinalquantError(Exception):
    """Base class of every error spinalquant raises on purpose."""


class LoadError(SpinalquantError):
    """An image file cannot be read (missing, empty, corrupt, unsupported)."""


class MissingChannelError(SpinalquantError, KeyError):
    """A marker was asked for that the image does not contain."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PixelSizeError(SpinalquantError):
    """The physical pixel size is unknown (no metadata and no config value)."""


class ConfigError(SpinalquantError):
    """A configuration file or value is invalid."""


class ImageContentError(SpinalquantError, ValueError):
    """The pixel data cannot be analysed (all zeros, NaN, wrong axes...)."""

"""The :class:`Stack`: pixels plus the metadata that gives them meaning.

A ``Stack`` is what every loader returns and what every analysis takes. Pixel
data is always 4-D ``(C, Z, Y, X)``; a 2-D image has ``Z == 1``. Channel names
come from the file, physical sizes are in micrometres ``(z, y, x)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MissingChannelError, PixelSizeError

#: Default marker -> aliases table. Matching is case-insensitive and works on
#: whole names ("EGFP") and on tokens of a name ("Alexa 488-GFP" -> "gfp").
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "gfp": ("gfp", "egfp", "copgfp", "turbogfp", "zsgreen", "anti-gfp"),
    "gfap": ("gfap",),
    "chat": ("chat", "choline acetyltransferase"),
    "synapse": (
        "synaptophysin", "syp", "synapsin", "syn1", "vacht", "slc18a3", "psd95",
        "psd-95", "bassoon", "homer", "vglut1", "vglut2", "gephyrin",
    ),
    "border": ("laminin", "dystrophin", "wga", "lama2", "dmd", "caveolin3"),
    "nuclei": ("dapi", "hoechst", "draq5", "topro3", "to-pro-3", "nuclei"),
}

_SPLIT = re.compile(r"[^0-9a-z]+")


def _norm(name: str) -> str:
    return _SPLIT.sub("", name.lower())


def _tokens(name: str) -> set[str]:
    return {t for t in _SPLIT.split(name.lower()) if t}


def match_channel(
    channel_names: Sequence[str],
    marker: str,
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> int | None:
    """Index of the channel that carries ``marker``, or None.

    Parameters
    ----------
    channel_names : sequence of str
        Names as stored in the file.
    marker : str
        A marker key (``"gfp"``, ``"gfap"``, ...) or a literal channel name.
    aliases : mapping, optional
        Marker -> aliases; defaults to :data:`DEFAULT_ALIASES`.

    Raises
    ------
    MissingChannelError
        When more than one channel matches (ambiguous).

    Examples
    --------
    >>> match_channel(["DAPI", "Alexa 488-GFP", "GFAP-Cy3"], "gfp")
    1
    >>> match_channel(["DAPI"], "chat") is None
    True
    """
    table = DEFAULT_ALIASES if aliases is None else aliases
    key = marker.lower()
    names = [str(n) for n in channel_names]
    # a literal, exact channel name always wins
    exact = [i for i, n in enumerate(names) if n.lower() == key]
    if len(exact) == 1:
        return exact[0]
    alias_list = [key, *[str(a).lower() for a in table.get(key, ())]]
    hits: list[int] = []
    for i, n in enumerate(names):
        whole = _norm(n)
        toks = _tokens(n)
        for a in alias_list:
            if _norm(a) == whole or a in toks or (" " in a and a in n.lower()):
                hits.append(i)
                break
    if not hits:
        return None
    if len(hits) > 1:
        raise MissingChannelError(
            f"marker {marker!r} is ambiguous: channels "
            f"{[names[i] for i in hits]} all match; map it explicitly in the config "
            f"([channels] {marker} = \"<exact channel name>\" or an index)"
        )
    return hits[0]


@dataclass(frozen=True, eq=False)
class Stack:
    """A multichannel image with channel names and physical pixel sizes.

    Parameters
    ----------
    data : array-like, shape (C, Z, Y, X)
        Pixel data, numpy or dask; dtype as stored in the file.
    channel_names : tuple of str
        One name per channel.
    pixel_size_um : tuple of (float or None)
        Physical size ``(z, y, x)`` in micrometres; ``z`` may be None for a
        single plane, ``y``/``x`` are None only when the file has no
        calibration (analyses then refuse the image).
    path : Path, optional
        The file the data came from.
    metadata : dict
        Raw metadata from the reader (OME-XML, ImageJ tags, vendor dicts).
    rgb : bool
        True for brightfield colour images (channels are R, G, B).

    Examples
    --------
    >>> import numpy as np
    >>> s = Stack(np.zeros((2, 1, 8, 8), np.uint16), ("DAPI", "EGFP"), (None, 0.5, 0.5))
    >>> s.channel("gfp").shape
    (1, 8, 8)
    """

    data: Any
    channel_names: tuple[str, ...]
    pixel_size_um: tuple[float | None, float | None, float | None]
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    rgb: bool = False

    def __post_init__(self) -> None:
        if getattr(self.data, "ndim", None) != 4:
            raise ValueError(
                f"Stack.data must be 4-D (C, Z, Y, X); got shape {getattr(self.data, 'shape', None)}"
            )
        names = tuple(str(n) for n in self.channel_names)
        if len(names) != self.data.shape[0]:
            raise ValueError(
                f"{len(names)} channel names for {self.data.shape[0]} channels: {names}"
            )
        object.__setattr__(self, "channel_names", names)
        ps = tuple(None if v is None else float(v) for v in self.pixel_size_um)
        if len(ps) != 3:
            raise ValueError(f"pixel_size_um must be (z, y, x); got {self.pixel_size_um}")
        for v in ps:
            if v is not None and not (np.isfinite(v) and v > 0):
                raise PixelSizeError(f"pixel size must be a positive number of µm; got {ps}")
        object.__setattr__(self, "pixel_size_um", ps)

    def __repr__(self) -> str:  # the pixels would flood a notebook
        kind = "dask" if hasattr(self.data, "dask") else type(self.data).__name__
        where = f", path={self.path.name!r}" if self.path is not None else ""
        return (f"Stack(shape (C, Z, Y, X)={self.shape}, dtype={self.data.dtype}, {kind}, "
                f"channels={list(self.channel_names)}, pixel_size_um (z, y, x)={self.pixel_size_um}"
                f"{', rgb' if self.rgb else ''}{where})")

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def n_channels(self) -> int:
        return self.shape[0]

    @property
    def is_3d(self) -> bool:
        return self.shape[1] > 1

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "<array>"

    @property
    def yx_um(self) -> float:
        """The lateral pixel size in µm (mean of y and x); raises if unknown."""
        _, y, x = self.pixel_size_um
        if y is None or x is None:
            why = "; ".join(n for n in self.metadata.get("notes", []) if "calibrat" in n or "pixel size" in n)
            raise PixelSizeError(
                f"{self.name}: the file has no physical pixel size (no calibration in its "
                f"metadata{': ' + why if why else ''}); give it in the config "
                "([image] pixel_size_um = 0.31) or on the command line (--pixel-size 0.31), "
                "in µm per pixel"
            )
        return float((y + x) / 2)

    # --------------------------------------------------------------- channels
    def channel_index(
        self, marker: str | int, aliases: Mapping[str, Sequence[str]] | None = None
    ) -> int:
        """Index of a marker's channel; raise a clear error if it is absent."""
        if isinstance(marker, int | np.integer):
            if not 0 <= int(marker) < self.n_channels:
                raise MissingChannelError(
                    f"{self.name}: channel index {marker} out of range; the file has "
                    f"{self.n_channels} channels {list(self.channel_names)}"
                )
            return int(marker)
        idx = match_channel(self.channel_names, marker, aliases)
        if idx is None:
            raise MissingChannelError(
                f"{self.name}: no channel for marker {marker!r}; the file has "
                f"{list(self.channel_names)}. Map it in the config, e.g. "
                f"[channels] {marker} = \"{self.channel_names[0]}\""
            )
        return idx

    def has_channel(
        self, marker: str, aliases: Mapping[str, Sequence[str]] | None = None
    ) -> bool:
        try:
            return match_channel(self.channel_names, marker, aliases) is not None
        except MissingChannelError:
            return False

    def channel(
        self, marker: str | int, aliases: Mapping[str, Sequence[str]] | None = None
    ) -> Any:
        """The (Z, Y, X) data of one marker, looked up by name through aliases."""
        return self.data[self.channel_index(marker, aliases)]

    def with_pixel_size(self, pixel_size_um: tuple[float | None, float | None, float | None]) -> Stack:
        """A copy with another pixel size (the data is shared, not copied)."""
        return replace(self, pixel_size_um=pixel_size_um)

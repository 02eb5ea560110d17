"""TIFF-specific helpers: OME-XML and ImageJ metadata parsing."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

#: Length units as they appear in OME-XML and ImageJ, in micrometres.
UNIT_TO_UM: dict[str, float] = {
    "pm": 1e-6,
    "nm": 1e-3,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,  # Greek mu
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,  # ImageJ escapes µ this way
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "inch": 25400.0,
    "in": 25400.0,
    "a": 1e-4,  # ångström
    "å": 1e-4,
}


def unit_factor(unit: str | None) -> float | None:
    """µm per ``unit``, or None for an unknown / missing unit."""
    if unit is None:
        return None
    return UNIT_TO_UM.get(str(unit).strip().lower())


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ome_pixels(xml: str, image: int = 0) -> ET.Element | None:
    root = ET.fromstring(xml)
    images = [el for el in root if _local(el.tag) == "Image"]
    if len(images) <= image:
        return None
    for el in images[image]:
        if _local(el.tag) == "Pixels":
            return el
    return None


def ome_channel_names(xml: str | None, image: int = 0) -> list[str] | None:
    """Channel names of one OME image, or None if no channel is named.

    A channel without a ``Name`` is named by its ``Fluor`` attribute, else
    ``C<index>``, so that one unnamed channel does not hide the names of the
    others.

    Examples
    --------
    >>> xml = ('<OME><Image><Pixels><Channel Name="GFP"/><Channel Name=""/>'
    ...        '<Channel Fluor="Alexa 647"/></Pixels></Image></OME>')
    >>> ome_channel_names(xml)
    ['GFP', 'C1', 'Alexa 647']
    """
    if not xml:
        return None
    try:
        pixels = _ome_pixels(xml, image)
    except ET.ParseError:
        return None
    if pixels is None:
        return None
    channels = [el for el in pixels if _local(el.tag) == "Channel"]
    names: list[str] = []
    for i, el in enumerate(channels):
        name = next((str(v).strip() for v in (el.get("Name"), el.get("Fluor"))
                     if v is not None and str(v).strip()), None)
        names.append(name if name is not None else f"C{i}")
    if not any(n != f"C{i}" for i, n in enumerate(names)):
        return None
    return names


def ome_pixel_info(xml: str | None, image: int = 0) -> dict[str, Any]:
    """``PhysicalSizeX/Y/Z`` (converted to µm) and sizes of one OME image."""
    out: dict[str, Any] = {}
    if not xml:
        return out
    try:
        pixels = _ome_pixels(xml, image)
    except ET.ParseError:
        return out
    if pixels is None:
        return out
    for key in ("X", "Y", "Z"):
        raw = pixels.get(f"PhysicalSize{key}")
        if raw is None:
            continue
        factor = unit_factor(pixels.get(f"PhysicalSize{key}Unit", "µm"))
        try:
            value = float(raw)
        except ValueError:
            continue
        if factor is not None and value > 0:
            out[key.lower()] = value * factor
    for key in ("SizeC", "SizeZ", "SizeT", "DimensionOrder", "Type"):
        if pixels.get(key) is not None:
            out[key] = pixels.get(key)
    return out

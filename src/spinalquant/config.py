"""Configuration: a TOML file mapped onto frozen dataclasses, one per step.

Every analysis step owns a small frozen parameter dataclass (``GfpCellParams``,
``MotorNeuronParams``, ``FiberParams`` ...) defined next to the code that uses
it. A :class:`Config` bundles one instance of each, plus the image, channel and
output options. ``load_config(path)`` reads a TOML file whose tables have the
same names as the :class:`Config` fields; unknown keys and values of the wrong
type are errors that name the key.

Examples
--------
>>> cfg = Config.from_dict({"motor_neurons": {"min_area_um2": 250}})
>>> cfg.motor_neurons.min_area_um2
250.0
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .stack import DEFAULT_ALIASES


@dataclass(frozen=True)
class ImageParams:
    """How images are read and reduced before segmentation.

    Parameters
    ----------
    pixel_size_um : float or None
        Lateral pixel size (µm) used when a file has no calibration, or to
        override it when ``override_pixel_size`` is true.
    z_step_um : float or None
        Z spacing (µm) used when a file has none.
    override_pixel_size : bool
        Use ``pixel_size_um`` even when the file has its own calibration.
    projection : str
        How a z-stack becomes one plane for 2-D analysis: "max" (maximum
        intensity projection, the default, as in most published counts),
        "mean", or "best" (the single sharpest plane).
    mode : str
        "2d" analyses the projection; "3d" segments GFP+ cells in 3-D so that
        a cell spanning several planes is counted once (other kinds still use
        the projection).
    memory_budget_mb : float
        Images whose analysis would need more memory than this (estimated
        from their size) are read lazily and analysed in overlapping tiles,
        each object counted once.
    tile_um : float
        Side of the tiles (µm) used for such images.
    """

    pixel_size_um: float | None = None
    z_step_um: float | None = None
    override_pixel_size: bool = False
    projection: str = "max"
    mode: str = "2d"
    memory_budget_mb: float = 3072.0
    tile_um: float = 700.0

    def __post_init__(self) -> None:
        if self.projection not in ("max", "mean", "best"):
            raise ConfigError(
                f"[image] projection must be 'max', 'mean' or 'best'; got {self.projection!r}"
            )
        if self.mode not in ("2d", "3d"):
            raise ConfigError(f"[image] mode must be '2d' or '3d'; got {self.mode!r}")
        for key in ("pixel_size_um", "z_step_um"):
            v = getattr(self, key)
            if v is not None and not v > 0:
                raise ConfigError(f"[image] {key} must be a positive number of µm; got {v}")


@dataclass(frozen=True)
class SynapseParams:
    """Assigning synaptic puncta to motor neurons.

    Parameters
    ----------
    distance_um : float
        A punctum is perisomatic to a motor neuron when its centre lies within
        this distance of the soma outline (on or outside it).
    inside_um : float
        Puncta whose centre lies up to this far inside the segmented soma
        outline also count (boutons sit on the membrane; a segmented outline
        is ±1 px). 0 applies the strict "on or outside" reading.
    """

    distance_um: float = 2.0
    inside_um: float = 1.0


@dataclass(frozen=True)
class ColocalizationParams:
    """Pixel-based GFP/GFAP colocalization.

    Parameters
    ----------
    costes : bool
        Compute Costes automatic thresholds and thresholded Manders tM1/tM2.
    pvalue : bool
        Compute the Costes randomization p-value (slow on large images).
    n_iter : int
        Number of randomizations for the p-value.
    within_roi : bool
        Restrict pixel colocalization to the ROI when one is present.
    manders_threshold : str
        "costes" (default): ``manders_m1/m2`` are Manders coefficients above
        the Costes automatic thresholds (Coloc 2's tM1/tM2); "zero": classic
        above-zero M1/M2, meaningful only for background-free images.
    """

    costes: bool = True
    pvalue: bool = False
    n_iter: int = 100
    within_roi: bool = True
    manders_threshold: str = "costes"

    def __post_init__(self) -> None:
        if self.manders_threshold not in ("costes", "zero"):
            raise ConfigError(
                f"[colocalization] manders_threshold must be 'costes' or 'zero'; got {self.manders_threshold!r}"
            )


@dataclass(frozen=True)
class MuscleParams:
    """Per-image muscle figures.

    Parameters
    ----------
    exclude_border : bool
        Exclude fibers touching the image edge (contract default).
    atrophy_threshold_um2 : float
        Fibers with a cross-sectional area below this count as atrophic.
    histogram_bin_um2 : float
        Width of the fiber CSA histogram bins.
    histogram_max_um2 : float
        Upper end of the last regular histogram bin (larger fibers go to an
        open-ended last bin).
    """

    exclude_border: bool = True
    atrophy_threshold_um2: float = 500.0
    histogram_bin_um2: float = 250.0
    histogram_max_um2: float = 5000.0


@dataclass(frozen=True)
class RoiParams:
    """Ventral-horn ROI handling.

    Parameters
    ----------
    use_sidecar : bool
        Restrict cord counts to a sidecar ``<stem>.roi``/``.zip``/``.geojson``
        lying beside the image.
    """

    use_sidecar: bool = True


@dataclass(frozen=True)
class OutputParams:
    """What ``spinalquant run`` writes besides the tables.

    Parameters
    ----------
    labels : bool
        Write ``labels/<image>.ome.tif`` with every segmentation.
    qc : bool
        Write ``qc/<image>.png`` overlays.
    parquet : bool
        Also write tables as Parquet when pyarrow is installed.
    report : bool
        Write ``report.html`` at the end of a run.
    """

    labels: bool = True
    qc: bool = True
    parquet: bool = True
    report: bool = True


# Sections defined by the segmentation/measurement modules, imported lazily so
# that importing the config does not import every analysis.
_EXTERNAL = {
    "gfp_cells": "spinalquant.segment.gfp_cells:GfpCellParams",
    "gfap_positivity": "spinalquant.segment.gfp_cells:GfapPositivityParams",
    "astrocytes": "spinalquant.segment.astrocytes:AstrocyteParams",
    "motor_neurons": "spinalquant.segment.motor_neurons:MotorNeuronParams",
    "puncta": "spinalquant.segment.puncta:PunctaParams",
    "fibers": "spinalquant.segment.fibers:FiberParams",
}


def _external_class(section: str) -> type:
    module, name = _EXTERNAL[section].split(":")
    for mod in (module, "spinalquant.measure.colocalization", "spinalquant.measure.synapses"):
        try:
            cls = getattr(importlib.import_module(mod), name, None)
        except ImportError:
            cls = None
        if cls is not None:
            return cls
    raise ConfigError(f"parameter class {name} for [{section}] is not available")


def _default(section: str) -> Any:
    return _external_class(section)()


@dataclass(frozen=True)
class Config:
    """Every parameter of an analysis, one frozen dataclass per step.

    Build with ``Config()`` for the defaults, :func:`load_config` for a TOML
    file, or :meth:`Config.from_dict`.
    """

    image: ImageParams = field(default_factory=ImageParams)
    channels: Mapping[str, str | int] = field(default_factory=dict)
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    gfp_cells: Any = field(default_factory=lambda: _default("gfp_cells"))
    gfap_positivity: Any = field(default_factory=lambda: _default("gfap_positivity"))
    astrocytes: Any = field(default_factory=lambda: _default("astrocytes"))
    motor_neurons: Any = field(default_factory=lambda: _default("motor_neurons"))
    puncta: Any = field(default_factory=lambda: _default("puncta"))
    synapses: SynapseParams = field(default_factory=SynapseParams)
    colocalization: ColocalizationParams = field(default_factory=ColocalizationParams)
    fibers: Any = field(default_factory=lambda: _default("fibers"))
    muscle: MuscleParams = field(default_factory=MuscleParams)
    roi: RoiParams = field(default_factory=RoiParams)
    output: OutputParams = field(default_factory=OutputParams)

    # ---------------------------------------------------------------- helpers
    def marker(self, marker: str) -> str | int:
        """What to look up for a marker: an explicit mapping or the marker key."""
        return self.channels.get(marker, marker)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> Config:
        """Build a Config from nested dicts (as parsed from TOML)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a table of sections")
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "pixel_size_um":  # convenience top-level shortcut
                img = dict(data.get("image", {}))
                img.setdefault("pixel_size_um", value)
                kwargs["image"] = _build(ImageParams, img, "image", source)
                continue
            if key not in known:
                raise ConfigError(
                    f"{source}: unknown section [{key}]; known sections: {sorted(known)}"
                )
            if key == "image" and "image" in kwargs:
                continue
            if key == "channels":
                kwargs[key] = _channels(value, source)
            elif key == "aliases":
                kwargs[key] = _aliases(value, source)
            else:
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{source}: [{key}] must be a table, got {value!r}")
                kwargs[key] = _build(_section_class(key), value, key, source)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict of every resolved parameter (for run.json / TOML)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                out[f.name] = {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
            else:
                out[f.name] = {k: _plain(v) for k, v in dict(value).items()}
        return out


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def _section_class(name: str) -> type:
    local = {
        "image": ImageParams,
        "synapses": SynapseParams,
        "colocalization": ColocalizationParams,
        "muscle": MuscleParams,
        "roi": RoiParams,
        "output": OutputParams,
    }
    return local[name] if name in local else _external_class(name)


def _channels(value: Any, source: str) -> dict[str, str | int]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: [channels] must map markers to channel names or indices")
    out: dict[str, str | int] = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise ConfigError(
                f"{source}: [channels] {k} must be a channel name (string) or index (integer); got {v!r}"
            )
        out[str(k).lower()] = v
    return out


def _aliases(value: Any, source: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: [aliases] must map markers to lists of names")
    out = dict(DEFAULT_ALIASES)
    for k, v in value.items():
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{source}: [aliases] {k} must be a list of strings; got {v!r}")
        out[str(k).lower()] = tuple(dict.fromkeys([*out.get(str(k).lower(), ()), *v]))
    return out


def _coerce(value: Any, annotation: Any, default: Any, where: str) -> Any:
    """Check ``value`` against a field's type; ints become floats where floats are due."""
    hint = annotation
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    allowed: tuple[Any, ...]
    if origin in (typing.Union, types.UnionType):
        allowed = args
    else:
        allowed = (hint,)
    if value is None:
        if type(None) in allowed or default is None:
            return None
        raise ConfigError(f"{where} may not be empty")
    for t in allowed:
        base = typing.get_origin(t) or t
        if t is type(None):
            continue
        if base is bool:
            if isinstance(value, bool):
                return value
        elif base is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        elif base is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif base is str:
            if isinstance(value, str):
                return value
        elif base in (tuple, list):
            if isinstance(value, list | tuple):
                inner = typing.get_args(t)
                if inner and inner[0] is float:
                    return tuple(float(x) for x in value)
                return tuple(value)
        elif base is typing.Any:
            return value
    expected = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
    raise ConfigError(f"{where} must be {expected}; got {value!r} ({type(value).__name__})")


def _build(cls: type, values: Mapping[str, Any], section: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"{source}: unknown key '{key}' in [{section}]; valid keys: {sorted(names)}"
            )
        f = names[key]
        default = f.default if f.default is not dataclasses.MISSING else None
        kwargs[key] = _coerce(value, hints.get(key, Any), default, f"{source}: [{section}] {key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: [{section}]: {exc}") from exc


def load_config(path: str | Path | None) -> Config:
    """Read a TOML config file; ``None`` gives the defaults.

    Raises
    ------
    ConfigError
        For a missing or unparsable file, an unknown section or key, or a
        value of the wrong type; the message names the key.
    """
    if path is None:
        return Config()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    return Config.from_dict(data, source=str(p))


# ------------------------------------------------------------------ defaults
_PARAM_RE = re.compile(r"^(\s*)(\w+)\s*:\s*(.*)$")


def _field_docs(cls: type) -> dict[str, str]:
    """Descriptions of a dataclass's fields from its numpydoc 'Parameters' section."""
    doc = (cls.__doc__ or "").expandtabs()
    lines = doc.splitlines()
    docs: dict[str, list[str]] = {}
    in_params = False
    current = None
    indent = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped == "Parameters" and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            in_params = True
            continue
        if not in_params:
            continue
        if set(stripped) == {"-"}:
            continue
        if stripped and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"} and stripped != "Parameters":
            break  # next section
        m = _PARAM_RE.match(line)
        lead = len(line) - len(line.lstrip())
        if m and (indent is None or lead <= indent):
            indent = lead
            current = m.group(2)
            docs[current] = []
        elif current and stripped:
            docs[current].append(stripped)
    return {k: " ".join(v) for k, v in docs.items()}


def _toml_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def default_config_toml() -> str:
    """The default configuration as a commented TOML document."""
    cfg = Config()
    out = [
        "# spinalquant configuration (all values shown are the defaults).",
        "# Lengths are micrometres (µm), areas square micrometres (µm²).",
        "# Delete what you do not change; unknown keys are errors.",
        "",
        "[channels]",
        "# Map a marker to a channel name or index when names in the file are unusual:",
        '# gfp = "Alexa 488"',
        "# gfap = 2",
        "",
        "[aliases]",
        "# Extra names that identify a marker (added to the built-in ones):",
    ]
    for k, v in DEFAULT_ALIASES.items():
        out.append(f"# {k} = {_toml_value(list(v))}")
    for f in fields(cfg):
        if f.name in ("channels", "aliases"):
            continue
        value = getattr(cfg, f.name)
        docs = _field_docs(type(value))
        summary = (type(value).__doc__ or "").strip().splitlines()[0] if type(value).__doc__ else ""
        out += ["", f"[{f.name}]"]
        if summary:
            out.append(f"# {summary}")
        for sub in fields(value):
            v = getattr(value, sub.name)
            if docs.get(sub.name):
                out.append(f"# {docs[sub.name]}")
            if v is None:
                out.append(f"# {sub.name} =   (not set)")
            else:
                out.append(f"{sub.name} = {_toml_value(v)}")
    return "\n".join(out) + "\n"

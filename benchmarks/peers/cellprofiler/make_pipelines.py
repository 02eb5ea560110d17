"""Write the CellProfiler 4.2 pipelines used by the benchmark (.cppipe text).

Run with CellProfiler's own interpreter (it imports cellprofiler_core)::

    /work/peers/cp39/bin/python make_pipelines.py PARAMS.json OUTDIR

The pipelines are assembled module by module through CellProfiler's API and
saved in its text format, so every setting is valid for CP 4.2.8. What a lab
would click in the GUI is set here by the settings' labels. PARAMS.json holds
the thresholds and declumping choices tuned on pilot images (see
benchmarks/README.md); the committed .cppipe files are its output.

Pipelines
---------
cord.cppipe
    GFP, GFAP, ChAT, SYN planes by file name → IdentifyPrimaryObjects GFPCells,
    Neurons, Puncta (after EnhanceOrSuppressFeatures "Speckles") →
    ExpandOrShrinkObjects (neurons + 2 µm) → RelateObjects (puncta to
    neurons) → MeasureObjectSizeShape, MeasureObjectIntensity (GFAP in GFP
    cells), MeasureColocalization (GFP/GFAP) → label images (SaveImages) →
    ExportToSpreadsheet.
muscle.cppipe / he.cppipe
    border stain (inverted) or H&E (ColorToGray, inverted) → IdentifyPrimaryObjects
    Fibers → MeasureObjectSizeShape → label image → ExportToSpreadsheet.
coloc.cppipe
    two images → MeasureColocalization → ExportToSpreadsheet.
"""

import io
import json
import sys
from pathlib import Path

import cellprofiler_core.preferences as prefs

prefs.set_headless()

from cellprofiler.modules import (  # noqa: E402
    colortogray,
    convertobjectstoimage,
    enhanceorsuppressfeatures,
    expandorshrinkobjects,
    exporttospreadsheet,
    identifyprimaryobjects,
    imagemath,
    measurecolocalization,
    measureobjectintensity,
    measureobjectsizeshape,
    relateobjects,
    saveimages,
)
from cellprofiler_core.modules import groups, images, metadata, namesandtypes  # noqa: E402
from cellprofiler_core.pipeline import Pipeline  # noqa: E402


def _set(module, label, value, nth=0):
    hits = [s for s in module.settings() if s.text == label]
    if len(hits) <= nth:
        raise KeyError(f"{type(module).__name__}: no setting {label!r} #{nth}")
    hits[nth].value = ", ".join(value) if isinstance(value, list) else value


def _inputs(pipe, assignments, color=()):
    for m in (images.Images(), metadata.Metadata()):
        pipe.add_module(_num(m, pipe))
    nt = namesandtypes.NamesAndTypes()
    nt.assignment_method.value = namesandtypes.ASSIGN_RULES
    nt.matching_choice.value = namesandtypes.MATCH_BY_ORDER
    for i, (name, token) in enumerate(assignments):
        if i:
            nt.add_assignment()
        a = nt.assignments[i]
        a.rule_filter.value = f'and (file does contain "{token}")'
        a.image_name.value = name
        a.load_as_choice.value = "Color image" if name in color else "Grayscale image"
    pipe.add_module(_num(nt, pipe))
    pipe.add_module(_num(groups.Groups(), pipe))


def _num(module, pipe):
    module.set_module_num(len(pipe.modules()) + 1)
    return module


def _primary(pipe, image, name, p, px):
    """IdentifyPrimaryObjects; sizes in ``p`` are µm, converted with ``px`` (µm/px)."""
    m = identifyprimaryobjects.IdentifyPrimaryObjects()
    dmin = max(1, int(round(p["dmin_um"] / px)))
    dmax = max(dmin + 1, int(round(p["dmax_um"] / px)))
    _set(m, "Select the input image", image)
    _set(m, "Name the primary objects to be identified", name)
    _set(m, "Typical diameter of objects, in pixel units (Min,Max)", f"{dmin},{dmax}")
    _set(m, "Discard objects touching the border of the image?", "Yes" if p.get("exclude_border") else "No")
    _set(m, "Method to distinguish clumped objects", p.get("declump", "Shape"))
    _set(m, "Method to draw dividing lines between clumped objects", p.get("dividing", "Shape"))
    if "maxima_um" in p:
        _set(m, "Automatically calculate minimum allowed distance between local maxima?", "No")
        _set(m, "Suppress local maxima that are closer than this minimum allowed distance",
             round(p["maxima_um"] / px, 2))
    _set(m, "Fill holes in identified objects?", p.get("fill", "After both thresholding and declumping"))
    _set(m, "Use advanced settings?", "Yes")
    _set(m, "Threshold strategy", p.get("strategy", "Global"))
    _set(m, "Thresholding method", p.get("method", "Otsu"))
    _set(m, "Thresholding method", p.get("method", "Otsu"), nth=1)
    _set(m, "Threshold smoothing scale", float(p.get("smoothing", 1.3488)))
    _set(m, "Threshold correction factor", float(p.get("correction", 1.0)))
    _set(m, "Lower and upper bounds on threshold", f"{p.get('lower', 0.0)},1.0")
    _set(m, "Size of adaptive window", int(round(p.get("window_um", 25) / px)))
    _set(m, "Maximum number of objects", 100000)
    pipe.add_module(_num(m, pipe))


def _save_labels(pipe, objects, image_for_name, suffix):
    c = convertobjectstoimage.ConvertObjectsToImage()
    _set(c, "Select the input objects", objects)
    _set(c, "Name the output image", f"{objects}Labels")
    _set(c, "Select the color format", "uint16")
    pipe.add_module(_num(c, pipe))
    s = saveimages.SaveImages()
    _set(s, "Select the image to save", f"{objects}Labels")
    _set(s, "Select method for constructing file names", "From image filename")
    _set(s, "Select image name for file prefix", image_for_name)
    _set(s, "Append a suffix to the image file name?", "Yes")
    _set(s, "Text to append to the image name", suffix)
    _set(s, "Saved file format", "tiff")
    _set(s, "Image bit depth", "16-bit integer")
    _set(s, "Overwrite existing files without warning?", "Yes")
    pipe.add_module(_num(s, pipe))


def _sizeshape(pipe, objects):
    m = measureobjectsizeshape.MeasureObjectSizeShape()
    _set(m, "Select object sets to measure", objects)
    _set(m, "Calculate the Zernike features?", "No")
    pipe.add_module(_num(m, pipe))


def _coloc(pipe, a, b, threshold_pct=15.0):
    m = measurecolocalization.MeasureColocalization()
    _set(m, "Select images to measure", [a, b])
    _set(m, "Set threshold as percentage of maximum intensity for the images", float(threshold_pct))
    _set(m, "Run all metrics?", "No")
    _set(m, "Calculate correlation and slope metrics?", "Yes")
    _set(m, "Calculate the Manders coefficients?", "Yes")
    _set(m, "Calculate the Rank Weighted Colocalization coefficients?", "No")
    _set(m, "Calculate the Overlap coefficients?", "No")
    _set(m, "Calculate the Manders coefficients using Costes auto threshold?", "Yes")
    pipe.add_module(_num(m, pipe))


def _export(pipe):
    m = exporttospreadsheet.ExportToSpreadsheet()
    _set(m, "Add a prefix to file names?", "No")
    _set(m, "Overwrite existing files without warning?", "Yes")
    _set(m, "Add image file and folder names to your object data file?", "Yes")
    pipe.add_module(_num(m, pipe))


def cells(p, px):
    """GFP channel only (real nuclei used as stand-in GFP cells)."""
    pipe = Pipeline()
    _inputs(pipe, [("GFP", "__gfp.")])
    _primary(pipe, "GFP", "GFPCells", p["gfp_cells"], px)
    _sizeshape(pipe, ["GFPCells"])
    _save_labels(pipe, "GFPCells", "GFP", "_cplabels")
    _export(pipe)
    return pipe


def cord(p, px):
    pipe = Pipeline()
    _inputs(pipe, [("GFP", "__gfp."), ("GFAP", "__gfap."), ("ChAT", "__chat."), ("SYN", "__synapse.")])
    _primary(pipe, "GFP", "GFPCells", p["gfp_cells"], px)
    _primary(pipe, "ChAT", "Neurons", p["motor_neurons"], px)
    e = enhanceorsuppressfeatures.EnhanceOrSuppressFeatures()
    _set(e, "Select the input image", "SYN")
    _set(e, "Name the output image", "SYNSpeckles")
    _set(e, "Feature size", max(2, int(round(p["puncta"]["feature_um"] / px))))
    _set(e, "Feature type", "Speckles")
    pipe.add_module(_num(e, pipe))
    _primary(pipe, "SYNSpeckles", "Puncta", p["puncta"], px)
    x = expandorshrinkobjects.ExpandOrShrinkObjects()
    _set(x, "Select the input objects", "Neurons")
    _set(x, "Name the output objects", "NeuronsPlus2um")
    _set(x, "Select the operation", "Expand objects by a specified number of pixels")
    _set(x, "Number of pixels by which to expand or shrink", int(round(p["relate_expand_um"] / px)))
    pipe.add_module(_num(x, pipe))
    r = relateobjects.RelateObjects()
    _set(r, "Parent objects", "NeuronsPlus2um")
    _set(r, "Child objects", "Puncta")
    pipe.add_module(_num(r, pipe))
    _sizeshape(pipe, ["GFPCells", "Neurons"])
    mi = measureobjectintensity.MeasureObjectIntensity()
    _set(mi, "Select images to measure", ["GFAP"])
    _set(mi, "Select objects to measure", ["GFPCells"])
    pipe.add_module(_num(mi, pipe))
    _coloc(pipe, "GFP", "GFAP")
    _save_labels(pipe, "GFPCells", "GFP", "_cplabels")
    _save_labels(pipe, "Neurons", "ChAT", "_cplabels")
    _export(pipe)
    return pipe


def muscle(p, px, he=False):
    pipe = Pipeline()
    if he:
        _inputs(pipe, [("HE", "__he.")], color=("HE",))
        g = colortogray.ColorToGray()
        _set(g, "Select the input image", "HE")
        _set(g, "Name the output image", "Border")
        pipe.add_module(_num(g, pipe))
    else:
        _inputs(pipe, [("Border", "__border.")])
    m = imagemath.ImageMath()
    _set(m, "Operation", "Invert")
    _set(m, "Select the image", "Border")
    _set(m, "Name the output image", "Interior")
    pipe.add_module(_num(m, pipe))
    _primary(pipe, "Interior", "Fibers", p["fibers_he" if he else "fibers"], px)
    _sizeshape(pipe, ["Fibers"])
    _save_labels(pipe, "Fibers", "HE" if he else "Border", "_cplabels")
    _export(pipe)
    return pipe


def coloc():
    pipe = Pipeline()
    _inputs(pipe, [("A", "__a."), ("B", "__b.")])
    # threshold 0 %: M1 = sum(A where B > 0) / sum(A), the definition of Coloc 2 / Manders 1993
    _coloc(pipe, "A", "B", threshold_pct=0.0)
    _export(pipe)
    return pipe


def main(params_path, outdir, specs):
    """Write one pipeline per ``KIND:PIXEL_UM`` spec (e.g. ``cord:0.5``) as KIND_PIXEL.cppipe."""
    p = json.loads(Path(params_path).read_text())
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        kind, _, px_text = spec.partition(":")
        px = float(px_text or 1.0)
        if kind == "coloc":
            pipe = coloc()
        elif kind == "he":
            pipe = muscle(p, px, he=True)
        else:
            pipe = {"cord": cord, "cells": cells, "muscle": muscle}[kind](p, px)
        buf = io.StringIO()
        pipe.dump(buf)
        (out / f"{kind}_{px_text or '1'}.cppipe").write_text(buf.getvalue())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])

"""ROI reading/writing round trips, sidecar discovery and filtering."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from spinalquant.errors import LoadError
from spinalquant.roi import (
    RoiError,
    _stem,
    filter_by_roi,
    find_sidecar_roi,
    polygon_mask,
    read_roi_mask,
    roi_area_um2,
    roi_mask,
    write_geojson,
    write_imagej_roi,
)

SHAPE = (300, 400)


def _shoelace(poly_yx: np.ndarray) -> float:
    y, x = poly_yx[:, 0], poly_yx[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _horn(seed: int = 0, center=(150.0, 200.0), radius=100.0, n=40) -> np.ndarray:
    """A star-shaped, irregular outline like a hand-drawn ventral horn."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = radius * (1 + 0.25 * np.sin(3 * t + 0.5) + 0.05 * rng.standard_normal(n))
    return np.column_stack([center[0] + 0.8 * r * np.sin(t), center[1] + r * np.cos(t)])


@pytest.mark.parametrize("suffix", [".roi", ".zip", ".geojson"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_polygon_round_trip_area(tmp_path, suffix, seed):
    poly = _horn(seed)
    path = tmp_path / f"L4_s1{suffix}"
    if suffix == ".geojson":
        write_geojson(path, [poly])
    else:
        write_imagej_roi(path, poly)
    mask = read_roi_mask(path, shape_yx=SHAPE)
    assert mask.shape == SHAPE and mask.dtype == bool
    expected = _shoelace(poly)
    assert abs(mask.sum() - expected) / expected < 0.01
    # same pixels as rasterising the polygon directly
    assert np.array_equal(mask, polygon_mask(poly, shape_yx=SHAPE))


def test_integer_polygon_round_trip_is_exact(tmp_path):
    # a rectangle with integer (pixel-edge) corners covers exactly those pixels
    poly = np.array([[10, 20], [10, 60], [40, 60], [40, 20]])
    write_imagej_roi(tmp_path / "r.roi", poly)
    mask = read_roi_mask(tmp_path / "r.roi", shape_yx=(64, 64))
    expected = np.zeros((64, 64), bool)
    expected[10:40, 20:60] = True
    assert np.array_equal(mask, expected)


def test_rectangle_oval_and_composite_imagej(tmp_path):
    from roifile import ROI_TYPE, ImagejRoi

    rect = ImagejRoi(roitype=ROI_TYPE.RECT, left=20, top=30, right=120, bottom=80)
    rect.tofile(tmp_path / "rect.roi")
    m = read_roi_mask(tmp_path / "rect.roi", shape_yx=SHAPE)
    assert m.sum() == 100 * 50 and m[30, 20] and not m[80, 20] and not m[30, 120]

    oval = ImagejRoi(roitype=ROI_TYPE.OVAL, left=50, top=40, right=250, bottom=160)
    oval.tofile(tmp_path / "oval.roi")
    m = read_roi_mask(tmp_path / "oval.roi", shape_yx=SHAPE)
    area = np.pi * 100 * 60
    assert abs(m.sum() - area) / area < 0.01

    # composite: a square with a square hole (ImageJ ShapeRoi path)
    path = []
    for ring in ([(10, 10), (110, 10), (110, 110), (10, 110)], [(40, 40), (70, 40), (70, 70), (40, 70)]):
        path += [0, *ring[0]]
        for p in ring[1:]:
            path += [1, *p]
        path += [4]
    comp = ImagejRoi(roitype=ROI_TYPE.RECT, left=10, top=10, right=110, bottom=110,
                     multi_coordinates=np.array(path, np.float32), shape_roi_size=len(path))
    comp.tofile(tmp_path / "comp.roi")
    m = read_roi_mask(tmp_path / "comp.roi", shape_yx=SHAPE)
    assert m.sum() == 100 * 100 - 30 * 30
    assert not m[55, 55] and m[20, 20]


def test_zip_is_union_of_rois(tmp_path):
    a = np.array([[10, 10], [10, 110], [110, 110], [110, 10]], float)
    b = a + 50  # overlaps a by 60x60
    write_imagej_roi(tmp_path / "set.zip", [a, b])
    m = read_roi_mask(tmp_path / "set.zip", shape_yx=SHAPE)
    assert m.sum() == 2 * 100 * 100 - 50 * 50


def test_geojson_holes_and_multipolygon(tmp_path):
    outer = np.array([[0, 0], [0, 100], [100, 100], [100, 0]], float) + 20
    hole = np.array([[30, 30], [30, 60], [60, 60], [60, 30]], float) + 20
    far = np.array([[200, 200], [200, 260], [260, 260], [260, 200]], float)
    write_geojson(tmp_path / "h.geojson", [[outer, hole]])
    m = read_roi_mask(tmp_path / "h.geojson", shape_yx=SHAPE)
    assert m.sum() == 100 * 100 - 30 * 30

    # a QuPath-like MultiPolygon feature (coordinates are x, y)
    def ring(p):
        xy = p[:, ::-1].tolist()
        return [*xy, xy[0]]

    obj = [{"type": "Feature", "properties": {"objectType": "annotation"},
            "geometry": {"type": "MultiPolygon",
                         "coordinates": [[ring(outer), ring(hole)], [ring(far)]]}}]
    (tmp_path / "mp.geojson").write_text(json.dumps(obj))
    m2 = read_roi_mask(tmp_path / "mp.geojson", shape_yx=SHAPE)
    assert m2.sum() == 100 * 100 - 30 * 30 + 60 * 60

    # coordinates declared in µm are converted with the pixel size
    obj_um = {"type": "FeatureCollection", "units": "um",
              "features": [{"type": "Feature", "properties": {},
                            "geometry": {"type": "Polygon", "coordinates": [ring(outer * 0.5)]}}]}
    (tmp_path / "um.geojson").write_text(json.dumps(obj_um))
    m3 = read_roi_mask(tmp_path / "um.geojson", shape_yx=SHAPE, pixel_size_um=0.5)
    assert m3.sum() == 100 * 100
    with pytest.raises(RoiError, match="pixel_size_um"):
        read_roi_mask(tmp_path / "um.geojson", shape_yx=SHAPE)


def test_roi_mask_union_and_area(tmp_path):
    a = np.array([[0, 0], [0, 10], [10, 10], [10, 0]], float)
    write_imagej_roi(tmp_path / "a.roi", a)
    write_geojson(tmp_path / "a.geojson", [a + 20])
    m = roi_mask([tmp_path / "a.roi", tmp_path / "a.geojson"], shape_yx=(40, 40))
    assert m.sum() == 200
    assert roi_area_um2(m, pixel_size_um=0.5) == pytest.approx(50.0)
    assert roi_mask([], shape_yx=(4, 4)) is None


@pytest.mark.parametrize("content", [b"", b"not an roi at all", b"Iout" + b"\x00" * 10])
def test_corrupt_imagej_roi_raises_clear_error(tmp_path, content):
    p = tmp_path / "bad.roi"
    p.write_bytes(content)
    with pytest.raises(RoiError, match=r"bad\.roi"):
        read_roi_mask(p, shape_yx=(10, 10))


def test_corrupt_zip_and_geojson_raise(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04garbage")
    (tmp_path / "bad.geojson").write_text("{ not json")
    (tmp_path / "lines.geojson").write_text(json.dumps(
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]}}))
    for name in ("bad.zip", "bad.geojson", "lines.geojson"):
        with pytest.raises(RoiError, match=name.replace(".", r"\.")):
            read_roi_mask(tmp_path / name, shape_yx=(10, 10))
    with pytest.raises(LoadError):  # RoiError is a LoadError (and a ValueError)
        read_roi_mask(tmp_path / "missing.roi", shape_yx=(10, 10))
    with pytest.raises(ValueError):
        read_roi_mask(tmp_path / "bad.geojson", shape_yx=(10, 10))


def test_stem_and_sidecar_discovery(tmp_path):
    assert _stem("L4_s1.ome.tif") == "L4_s1"
    assert _stem("/a/b/L4_s1.OME.TIFF") == "L4_s1"
    assert _stem("cord.v2.czi") == "cord.v2"
    assert _stem("x.nd2") == "x"
    img = tmp_path / "L4_s1.ome.tif"
    img.write_bytes(b"")
    assert find_sidecar_roi(img) == []
    for name in ("L4_s1.geojson", "L4_s1.roi", "L4_s1.ZIP", "L4_s10.roi", "L4_s1.ome.roi", "other.roi"):
        (tmp_path / name).write_bytes(b"")
    found = find_sidecar_roi(img)
    assert [p.name for p in found] == ["L4_s1.roi", "L4_s1.ZIP", "L4_s1.geojson"]
    assert find_sidecar_roi(tmp_path / "nope" / "x.tif") == []


def test_filter_by_roi():
    mask = np.zeros((20, 20), bool)
    mask[5:10, 5:10] = True
    df = pd.DataFrame({"label": [1, 2, 3, 4, 5],
                       "y_um": [3.0, 2.4, 4.9, -1.0, 50.0],
                       "x_um": [3.0, 2.6, 2.5, 3.0, 3.0]})
    out = filter_by_roi(df, mask, pixel_size_um=0.5)
    # (6,6) in; (4.8->5, 5.2->5) in; (9.8->10, 5) out; negative and off-image out
    assert out["label"].tolist() == [1, 2]
    assert out.index.tolist() == [0, 1]
    assert filter_by_roi(df, None, pixel_size_um=0.5).equals(df)
    empty = filter_by_roi(df.iloc[:0], mask, pixel_size_um=0.5)
    assert list(empty.columns) == list(df.columns) and len(empty) == 0
    with pytest.raises(ValueError, match="y_um"):
        filter_by_roi(pd.DataFrame({"a": [1]}), mask, pixel_size_um=0.5)

"""Round-trips through spinalquant.io writers/loaders and the shared vendor files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from spinalquant.errors import ConfigError, PixelSizeError
from spinalquant.io import (
    SUPPORTED_EXTENSIONS,
    image_stem,
    is_supported,
    load,
    load_labels,
    save_labels,
    save_stack,
)
from spinalquant.stack import Stack

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _data(sub: str) -> Path:
    folder = DATA / sub
    if not folder.is_dir():
        pytest.skip(f"shared test data {folder} not available")
    return folder


def _random(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(100, 20, shape).astype(dtype)
    top = min(np.iinfo(dtype).max, 4095)
    return rng.integers(0, top, shape, endpoint=True).astype(dtype)


# ------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", ["ome", "imagej"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize(
    ("shape", "names", "ps"),
    [
        ((1, 1, 20, 30), ("GFP",), (None, 0.31, 0.31)),  # 2-D
        ((1, 4, 20, 30), ("ChAT",), (1.5, 0.2, 0.2)),  # 3-D
        ((3, 2, 16, 24), ("DAPI", "EGFP", "GFAP-Cy3"), (0.8, 0.155, 0.16)),  # multichannel
    ],
)
def test_roundtrip(tmp_path, fmt, dtype, shape, names, ps):
    data = _random(shape, dtype)
    stack = Stack(data, names, ps)
    out = save_stack(stack, tmp_path / ("img.ome.tif" if fmt == "ome" else "img.tif"), format=fmt)
    back = load(out)
    assert back.data.dtype == dtype
    np.testing.assert_array_equal(back.data, data)
    assert back.channel_names == names
    expected_z = ps[0] if shape[1] > 1 else None
    assert back.pixel_size_um[0] == (pytest.approx(expected_z, rel=1e-6) if expected_z else None)
    assert back.pixel_size_um[1:] == pytest.approx(ps[1:], rel=1e-6)
    assert back.rgb is False
    assert back.metadata["format"] == ("ome-tiff" if fmt == "ome" else "imagej-tiff")


@pytest.mark.parametrize("name", ["Rückenmark_ß_µm.ome.tif", "脊髓 切片.tif", "ça va.tiff"])
def test_non_ascii_paths(tmp_path, name):
    folder = tmp_path / "données"
    folder.mkdir()
    data = _random((2, 1, 12, 14), np.uint16, seed=3)
    stack = Stack(data, ("GFP", "GFAP"), (None, 0.5, 0.5))
    fmt = "ome" if ".ome." in name else "imagej"
    back = load(save_stack(stack, folder / name, format=fmt))
    np.testing.assert_array_equal(back.data, data)
    assert back.channel_names == ("GFP", "GFAP")
    assert image_stem(folder / name) == name.split(".")[0]


@pytest.mark.parametrize("fmt", ["ome", "imagej"])
def test_rgb_roundtrip(tmp_path, fmt):
    data = _random((3, 1, 10, 12), np.uint8, seed=1)
    stack = Stack(data, ("R", "G", "B"), (None, 0.25, 0.25), rgb=True)
    out = save_stack(stack, tmp_path / "rgb.tif", format=fmt)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
        assert tif.series[0].shape == (10, 12, 3)
    back = load(out)
    assert back.rgb and back.channel_names == ("R", "G", "B")
    np.testing.assert_array_equal(back.data, data)
    assert back.pixel_size_um == (None, pytest.approx(0.25), pytest.approx(0.25))


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_png_jpg_rgb(tmp_path, ext):
    from PIL import Image

    rgb = _random((16, 18, 3), np.uint8, seed=2)
    Image.fromarray(rgb).save(tmp_path / f"he{ext}")
    back = load(tmp_path / f"he{ext}", pixel_size_um=0.5)
    assert back.rgb and back.shape == (3, 1, 16, 18) and back.data.dtype == np.uint8
    if ext == ".png":  # lossless
        np.testing.assert_array_equal(back.data[:, 0], np.moveaxis(rgb, -1, 0))
    with pytest.raises(PixelSizeError, match="pixel_size_um"):
        load(tmp_path / f"he{ext}")  # 72 dpi default is not a calibration


def test_imagej_units_and_spacing(tmp_path):
    data = _random((3, 8, 9), np.uint16)
    # 2 px per nm -> 0.0005 µm; spacing 200 nm -> 0.2 µm
    for unit, res, spacing, want_xy, want_z in [
        ("nm", 4.0, 200.0, 0.25e-3, 0.2),
        ("\\u00B5m", 2.0, 0.5, 0.5, 0.5),
        ("um", 1 / 0.3, 1.0, 0.3, 1.0),
        ("mm", 1000.0, 0.002, 1.0, 2.0),
        ("cm", 1e4, 1e-4, 1.0, 1.0),
        ("inch", 25400.0, 1 / 25400, 1.0, 1.0),
    ]:
        path = tmp_path / f"{unit.strip(chr(92))}.tif"
        tifffile.imwrite(
            path,
            data,
            imagej=True,
            resolution=(res, res),
            metadata={"axes": "ZYX", "unit": unit, "spacing": spacing},
        )
        s = load(path)
        assert s.pixel_size_um == (
            pytest.approx(want_z),
            pytest.approx(want_xy),
            pytest.approx(want_xy),
        ), unit


def test_imagej_single_channel_named_by_its_slice_label(tmp_path):
    """Fiji names a one-channel image through its slice labels (e.g. "Laminin")."""
    res = (1 / 0.5, 1 / 0.5)
    path = tmp_path / "laminin.tif"
    tifffile.imwrite(path, _random((20, 30), np.uint8), imagej=True, resolution=res,
                     metadata={"axes": "YX", "unit": "um", "Labels": ["Laminin"]})
    s = load(path)
    assert s.channel_names == ("Laminin",) and s.has_channel("border")
    same = tmp_path / "same.tif"
    tifffile.imwrite(same, _random((3, 20, 30), np.uint8), imagej=True, resolution=res,
                     metadata={"axes": "ZYX", "unit": "um", "Labels": ["ChAT"] * 3})
    assert load(same).channel_names == ("ChAT",)
    # per-plane labels (z positions) are not a channel name
    planes = tmp_path / "planes.tif"
    tifffile.imwrite(planes, _random((3, 20, 30), np.uint8), imagej=True, resolution=res,
                     metadata={"axes": "ZYX", "unit": "um", "Labels": ["z=0", "z=1", "z=2"]})
    assert load(planes).channel_names != ("z=0",)


def test_plain_tiff_has_no_pixel_size(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", _random((8, 8), np.uint16))
    with pytest.raises(PixelSizeError, match=r"plain\.tif.*pixel_size_um"):
        load(tmp_path / "plain.tif")
    s = load(tmp_path / "plain.tif", require_pixel_size=False)
    assert s.pixel_size_um == (None, None, None) and s.channel_names == ("C0",)
    s = load(tmp_path / "plain.tif", pixel_size_um=0.7)
    assert s.pixel_size_um == (None, 0.7, 0.7)


def test_overrides(tmp_path):
    stack = Stack(_random((2, 3, 8, 8), np.uint16), ("a", "b"), (2.0, 0.5, 0.5))
    out = save_stack(stack, tmp_path / "o.ome.tif")
    s = load(out, pixel_size_um=(None, 0.1, 0.1), channel_names=["GFP", "ChAT"])
    assert s.pixel_size_um == (2.0, 0.1, 0.1)
    assert s.channel_names == ("GFP", "ChAT")
    with pytest.raises(ConfigError, match="2 channels"):
        load(out, channel_names=["GFP"])


def test_time_axis_takes_first_point(tmp_path):
    data = _random((4, 2, 3, 8, 8), np.uint16)  # T, Z, C, Y, X
    path = tmp_path / "t.tif"
    tifffile.imwrite(
        path, data, imagej=True, resolution=(2, 2), metadata={"axes": "TZCYX", "unit": "um"}
    )
    s = load(path)
    np.testing.assert_array_equal(s.data, np.moveaxis(data[0], 1, 0))
    assert s.metadata["n_timepoints"] == 4 and s.metadata["time_index"] == 0


def test_axes_override_for_plain_stack(tmp_path):
    data = _random((5, 8, 9), np.uint8)
    tifffile.imwrite(tmp_path / "z.tif", data, metadata=None)
    s = load(tmp_path / "z.tif", axes="ZYX", pixel_size_um=(1.0, 0.2, 0.2))
    assert s.shape == (1, 5, 8, 9)
    np.testing.assert_array_equal(s.data[0], data)


def test_dask_above_threshold(tmp_path):
    stack = Stack(_random((2, 3, 16, 16), np.uint16), ("a", "b"), (1.0, 0.5, 0.5))
    out = save_stack(stack, tmp_path / "big.ome.tif")
    s = load(out, dask_threshold_bytes=100)
    assert hasattr(s.data, "compute") and not isinstance(s.data, np.ndarray)
    np.testing.assert_array_equal(s.data.compute(), stack.data)


def test_atomic_write_leaves_no_temp(tmp_path):
    stack = Stack(_random((1, 1, 8, 8), np.uint16), ("a",), (None, 1.0, 1.0))
    save_stack(stack, tmp_path / "a.ome.tif")
    save_stack(stack, tmp_path / "a.ome.tif")  # overwrite
    with pytest.raises(ValueError, match="ImageJ"):
        save_stack(
            Stack(np.zeros((1, 1, 4, 4), np.uint32), ("a",), (None, 1, 1)),
            tmp_path / "b.tif",
            format="imagej",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ome.tif"]


# ------------------------------------------------------------------ labels
@pytest.mark.parametrize("shape", [(20, 24), (3, 20, 24)])
def test_labels_roundtrip(tmp_path, shape):
    rng = np.random.default_rng(5)
    small = rng.integers(0, 50, shape).astype(np.int32)
    big = rng.integers(0, 70_000, shape).astype(np.int64)
    out = save_labels(
        tmp_path / "labels.ome.tif", {"gfp_cells": small, "puncta": big}, pixel_size_um=0.3
    )
    back = load_labels(out)
    assert list(back) == ["gfp_cells", "puncta"]
    assert back["puncta"].dtype == np.uint32 and back["puncta"].shape == shape
    np.testing.assert_array_equal(back["gfp_cells"], small)
    np.testing.assert_array_equal(back["puncta"], big)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    only_small = save_labels(tmp_path / "s.ome.tif", {"fibers": small}, pixel_size_um=0.3)
    assert load_labels(only_small)["fibers"].dtype == np.uint16
    with pytest.raises(ValueError, match="same shape"):
        save_labels(tmp_path / "x.ome.tif", {"a": small, "b": small[..., :5]}, pixel_size_um=1)


# --------------------------------------------------------------- names
def test_image_stem_and_supported():
    assert image_stem("L4_s1.ome.tif") == "L4_s1"
    assert image_stem("/x/a.ome.tiff") == "a"
    for ext in (".tif", ".tiff", ".czi", ".lif", ".nd2", ".png", ".TIF"):
        assert image_stem(f"dir/L4.s1{ext}") == "L4.s1"
        assert is_supported(f"L4.s1{ext}")
    assert not is_supported("notes.txt") and not is_supported(".tif")
    assert ".ome.tif" in SUPPORTED_EXTENSIONS


# ---------------------------------------------------------- vendor files
def test_ometiff_and_czi_identical():
    ome = load(_data("ometiff_aicsimageio") / "s_1_t_1_c_1_z_1.ome.tiff")
    czi = load(_data("czi_aicspylibczi") / "s_1_t_1_c_1_z_1.czi")
    assert ome.shape == czi.shape == (1, 1, 325, 475)
    assert ome.data.dtype == czi.data.dtype == np.uint16
    np.testing.assert_array_equal(ome.data, czi.data)
    for s in (ome, czi):
        assert s.pixel_size_um == (
            None,
            pytest.approx(1.0833333, rel=1e-6),
            pytest.approx(1.0833333, rel=1e-6),
        )
    assert czi.channel_names == ("Bright",)


@pytest.mark.parametrize(
    ("name", "shape", "dtype", "ps", "names"),
    [
        (
            "CD_s_1_t_3_c_2_z_5.czi",
            (2, 5, 170, 240),
            np.uint16,
            (0.32, 0.0906, 0.0906),
            ("LED555", "LED470"),
        ),
        ("mosaic_test.czi", (1, 1, 624, 1756), np.uint16, (None, 1.0833, 1.0833), ("EGFP",)),
        ("tiles_z.czi", (2, 2, 512, 510), np.uint8, (4.0, 0.830, 0.830), ("Ch1", "T PMT")),
    ],
)
def test_czi_files(name, shape, dtype, ps, names):
    s = load(_data("czi_aicspylibczi") / name)
    assert s.shape == shape and s.data.dtype == dtype
    assert s.channel_names == names
    assert s.pixel_size_um[0] == (pytest.approx(ps[0], rel=1e-3) if ps[0] else None)
    assert s.pixel_size_um[1:] == pytest.approx(ps[1:], rel=2e-3)


def test_czi_time_series_first_point():
    s = load(_data("czi_aicspylibczi") / "CD_s_1_t_3_c_2_z_5.czi")
    assert s.metadata["n_timepoints"] == 3 and s.metadata["time_index"] == 0
    assert s.metadata["n_scenes"] == 1


def test_lif_xz_scan_matches_reference_planes():
    folder = _data("lif_readlif")
    s = load(folder / "testdata_2channel_xz.lif", require_pixel_size=False)
    # bioio/liffile: image 0 "xzt" is T20 C2 Z128 X128, an XZ scan -> Y has length 1
    assert s.shape == (2, 128, 1, 128) and s.data.dtype == np.uint8
    assert s.channel_names == ("Green", "Red")
    assert s.metadata["n_scenes"] == 3 and s.metadata["n_timepoints"] == 20
    ref = tifffile.imread(folder / "xz_c0_t0.tif")
    np.testing.assert_array_equal(s.data[0, :, 0, :], ref)
    # readlif: 7.1286 px/µm in x and z -> 0.14028 µm, not its reciprocal
    z, y, x = s.pixel_size_um
    assert x == pytest.approx(1 / 7.1286, rel=1e-4) and z == pytest.approx(1 / 7.1287, rel=1e-4)
    assert y is None
    with pytest.raises(PixelSizeError, match="XZ scan"):
        load(folder / "testdata_2channel_xz.lif")


@pytest.mark.parametrize(
    ("name", "n_c", "n_z", "xy", "z", "names"),
    [
        (
            "example-multichannel.nd2",
            4,
            1,
            0.323390342594048,
            None,
            ("Mono", "DAPI", "FITC BP", "TRITC BP"),
        ),
        (
            "example-pbmc.nd2",
            4,
            1,
            0.646780685188096,
            None,
            ("Mono", "DAPI", "FITC BP", "TRITC BP"),
        ),
        ("example-cerevisiae.nd2", 2, 1, 0.108333, None, ("DIC", "FITC BP")),
        ("example-timelapse.nd2", 1, 1, 0.325, None, ("GFP 488 nm",)),
        ("example-zstack.nd2", 1, 11, 0.3234, 6.0, ("FITC BP",)),
    ],
)
def test_nd2_files(name, n_c, n_z, xy, z, names):
    s = load(_data("nd2_arcadia") / name)
    assert s.shape[:2] == (n_c, n_z) and s.data.dtype == np.uint16
    assert s.channel_names == names
    assert s.pixel_size_um[1:] == pytest.approx((xy, xy), rel=1e-4)
    assert s.pixel_size_um[0] == (pytest.approx(z) if z else None)  # not a default 1.0


def test_muscle_imagej_pixel_size():
    s = load(_data("muscle_myosat") / "SAMPLE_MUSCLE_IMAGE_01.tif")
    assert s.shape == (1, 1, 392, 500) and s.data.dtype == np.uint16
    assert s.pixel_size_um[1:] == pytest.approx((0.924, 0.924), rel=1e-4)


def test_stack_and_results_print_without_their_pixels():
    """A notebook shows a Stack or Results by its repr: shape, channels and figures, not arrays."""
    from spinalquant import analyze
    from spinalquant.synthetic import make_cord_section

    ph = make_cord_section(seed=4, shape=(256, 256), n_motor_neurons=2, n_small_chat=3, n_gfp_cells=8)
    text = repr(ph.stack)
    assert "channels=['DAPI', 'EGFP', 'GFAP', 'ChAT', 'Synaptophysin']" in text and len(text) < 400
    res = repr(analyze(ph.stack))
    assert "n_gfp_cells" in res and "[[" not in res and len(res) < 2000

"""Bad inputs fail early with errors that name the file and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from spinalquant.errors import ImageContentError, LoadError, PixelSizeError
from spinalquant.io import check_content, load, save_stack
from spinalquant.stack import Stack

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def good_stack_file(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (2, 5, 64, 64)).astype(np.uint16)
    return save_stack(
        Stack(data, ("GFP", "GFAP"), (1.0, 0.5, 0.5)), tmp_path / "good.tif", format="imagej"
    )


def test_missing_file(tmp_path):
    with pytest.raises(LoadError, match=r"nope\.tif: file not found"):
        load(tmp_path / "nope.tif")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.ome.tif").write_bytes(b"")
    with pytest.raises(LoadError, match=r"empty\.ome\.tif: file is empty \(0 bytes\)"):
        load(tmp_path / "empty.ome.tif")


def test_text_file_named_tif(tmp_path):
    (tmp_path / "notes.tif").write_text("sample list\nL4 left\n", encoding="utf-8")
    with pytest.raises(LoadError, match=r"notes\.tif: not a readable TIFF"):
        load(tmp_path / "notes.tif")


@pytest.mark.parametrize("fraction", [0.002, 0.3, 0.5, 0.8])
def test_truncated_tiff(tmp_path, good_stack_file, fraction):
    raw = good_stack_file.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(LoadError, match=r"cut\.tif: .*(truncated|corrupt|not a readable)"):
        load(cut, pixel_size_um=0.5)


def test_truncated_compressed_ome(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4000, (1, 6, 48, 48)).astype(np.uint16)
    path = tmp_path / "z.ome.tif"
    save_stack(Stack(data, ("GFP",), (1.0, 0.5, 0.5)), path, compression="zlib")
    raw = path.read_bytes()
    cut = tmp_path / "zcut.ome.tif"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(LoadError, match=r"zcut\.ome\.tif"):
        load(cut, pixel_size_um=0.5)


def test_unsupported_extension(tmp_path):
    (tmp_path / "scan.vsi").write_bytes(b"\x00" * 10)
    with pytest.raises(LoadError, match=r"scan\.vsi: unsupported file type '\.vsi'.*OME-TIFF"):
        load(tmp_path / "scan.vsi")


def test_unknown_axes(tmp_path):
    # a plain multi-page TIFF: pages could be Z or C -> refuse, do not guess
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:
        for _ in range(4):
            tw.write(np.ones((8, 8), np.uint16), contiguous=False, metadata=None)
    with pytest.raises(LoadError, match=r"pages\.tif: unsupported axis .*axes="):
        load(tmp_path / "pages.tif", pixel_size_um=0.5)


def test_lambda_sweep_lif_refused():
    path = DATA / "lif_readlif" / "LeicaLASX_wavelength-sweep_example.lif"
    if not path.is_file():
        pytest.skip(f"shared test data {path} not available")
    with pytest.raises(LoadError, match="unsupported axis"):
        load(path, pixel_size_um=0.1)


def test_nan_image(tmp_path):
    data = np.ones((1, 1, 8, 8), np.float32)
    data[0, 0, 3, 3] = np.nan
    path = save_stack(Stack(data, ("GFP",), (None, 0.5, 0.5)), tmp_path / "nan.ome.tif")
    with pytest.raises(ImageContentError, match=r"nan\.ome\.tif: the image contains NaN"):
        load(path)
    # lazily loaded (dask) data is not scanned by load; check_content finds the NaN
    lazy = load(path, dask_threshold_bytes=0)
    assert not isinstance(lazy.data, np.ndarray)
    with pytest.raises(ImageContentError, match=r"nan\.ome\.tif: the image contains NaN"):
        check_content(lazy)


def test_all_zero_image(tmp_path):
    path = save_stack(
        Stack(np.zeros((2, 1, 8, 8), np.uint16), ("GFP", "GFAP"), (None, 0.5, 0.5)),
        tmp_path / "zero.ome.tif",
    )
    stack = load(path)  # loading works; the content check refuses it
    with pytest.raises(ImageContentError, match=r"zero\.ome\.tif: the image is all zeros"):
        check_content(stack)


def test_constant_channel_when_requested():
    data = np.zeros((2, 1, 8, 8), np.uint16)
    data[0, 0, 2:4, 2:4] = 100
    stack = Stack(data, ("GFP", "GFAP"), (None, 0.5, 0.5))
    check_content(stack)  # the image as a whole has signal
    with pytest.raises(ImageContentError, match="'GFAP' is constant"):
        check_content(stack, channels=["gfap"])


def test_no_pixel_size_message(tmp_path):
    tifffile.imwrite(tmp_path / "raw.tif", np.ones((8, 8), np.uint8))
    with pytest.raises(PixelSizeError, match=r"raw\.tif: .*pixel_size_um = 0\.31"):
        load(tmp_path / "raw.tif")


def test_imagej_without_calibration_is_not_one_micron(tmp_path):
    # ImageJ writes unit "pixel" (or nothing) and resolution 1 when uncalibrated
    tifffile.imwrite(tmp_path / "ij.tif", np.ones((8, 8), np.uint16), imagej=True)
    with pytest.raises(PixelSizeError):
        load(tmp_path / "ij.tif")


def test_screen_dpi_is_not_a_calibration(tmp_path):
    tifffile.imwrite(
        tmp_path / "dpi.tif", np.ones((8, 8), np.uint8), resolution=(72, 72), resolutionunit="INCH"
    )
    assert load(tmp_path / "dpi.tif", require_pixel_size=False).pixel_size_um[1] is None
    tifffile.imwrite(
        tmp_path / "cm.tif",
        np.ones((8, 8), np.uint8),
        resolution=(1e4 / 0.4,) * 2,
        resolutionunit="CENTIMETER",
    )
    assert load(tmp_path / "cm.tif").pixel_size_um[1:] == pytest.approx((0.4, 0.4))


def test_folder_is_not_an_image(tmp_path):
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(LoadError, match="folder"):
        load(tmp_path / "dir.tif")

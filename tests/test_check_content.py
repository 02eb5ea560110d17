"""check_content on lazy (dask) stacks: same errors as on numpy, without reading every chunk."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from spinalquant.errors import ImageContentError
from spinalquant.io import check_content
from spinalquant.stack import Stack


class _Counting:
    """An array-like that counts the chunk reads dask makes."""

    def __init__(self, data: np.ndarray):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = 0

    def __getitem__(self, key):
        out = self.data[key]
        self.reads += out.size > 0  # dask probes the dtype with an empty slice
        return out


def _lazy(data: np.ndarray, names=("GFP", "GFAP")) -> tuple[Stack, _Counting]:
    src = _Counting(data)
    arr = da.from_array(src, chunks=(1, 1, 32, 32), asarray=True)
    return Stack(arr, tuple(names[: data.shape[0]]), (None, 0.5, 0.5)), src


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, (2, 1, 256, 256)).astype(np.uint16)


def test_real_image_reads_a_few_chunks():
    stack, src = _lazy(_image())
    check_content(stack, channels=["gfp", "gfap"])
    assert 0 < src.reads <= 4  # of 128 chunks


@pytest.mark.parametrize("value", [0, 7])
def test_constant_image_refused(value):
    stack, src = _lazy(np.full((2, 1, 128, 128), value, np.uint16))
    what = "all zeros" if value == 0 else "constant \\(every pixel is 7\\)"
    with pytest.raises(ImageContentError, match=f"the image is {what}"):
        check_content(stack)
    assert src.reads == 2 * 16  # a constant image is read whole, once


def test_signal_in_a_single_chunk_is_found():
    data = np.zeros((1, 1, 256, 256), np.uint16)
    data[0, 0, 200, 17] = 1  # one pixel in one of 64 chunks
    stack, _ = _lazy(data, names=("GFP",))
    check_content(stack)
    np_stack = Stack(data, ("GFP",), (None, 0.5, 0.5))
    check_content(np_stack)


def test_constant_channel_when_requested():
    data = _image(1)
    data[1] = 5
    stack, _ = _lazy(data)
    check_content(stack)  # the image as a whole has signal
    with pytest.raises(ImageContentError, match="'GFAP' is constant \\(every pixel is 5\\)"):
        check_content(stack, channels=["gfap"])
    check_content(stack, channels=["gfp"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_float_nan_found_in_one_pass(bad):
    data = _image(2).astype(np.float32)
    data[1, 0, 250, 3] = bad
    stack, src = _lazy(data)
    with pytest.raises(ImageContentError, match="NaN or infinite"):
        check_content(stack)
    assert src.reads == 2 * 64  # every chunk once: finiteness, minima and maxima share the reads
    ok, src = _lazy(_image(3).astype(np.float32))
    check_content(ok)
    assert src.reads == 2 * 64


def test_float_constant_refused():
    stack, _ = _lazy(np.zeros((1, 1, 64, 64), np.float32), names=("GFP",))
    with pytest.raises(ImageContentError, match="all zeros"):
        check_content(stack)

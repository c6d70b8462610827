"""``inputs.RaggedArray``: variable-size responses back to back in one array, handed to LoadGen as one pointer
and size per response."""

from __future__ import annotations

import numpy as np
import pytest

from mlbench.inference.inputs import RaggedArray


def test_views_and_pointers():
    data = np.arange(10, dtype=np.float32)
    r = RaggedArray(data, [0, 3, 3, 10])
    assert len(r) == 3
    assert [a.tolist() for a in r] == [[0, 1, 2], [], list(range(3, 10))]
    assert r[2].tolist() == list(range(3, 10))
    addresses, sizes = r.pointers()
    base = r.data.ctypes.data
    assert addresses == [base, base + 12, base + 12] and sizes == [12, 0, 28]
    assert all(isinstance(v, int) for v in addresses + sizes)


def test_rows_of_several_values():
    data = np.arange(12, dtype=np.int64).reshape(6, 2)
    addresses, sizes = RaggedArray(data, [0, 2, 6]).pointers()
    assert sizes == [32, 64] and addresses[1] - addresses[0] == 32


def test_non_contiguous_data_is_copied():
    data = np.arange(20, dtype=np.float32)[::2]
    r = RaggedArray(data, [0, 4, 10])
    assert r.data.flags["C_CONTIGUOUS"] and r[1].tolist() == data[4:].tolist()


@pytest.mark.parametrize("offsets, message", [([1, 10], "start at 0"), ([0, 5, 3, 10], "never decrease"),
                                              ([0, 4], "end at 4 for 10 rows"), ([], "start at 0")])
def test_bad_offsets(offsets, message):
    with pytest.raises(ValueError, match=message):
        RaggedArray(np.zeros(10, np.float32), offsets)

"""One sample array per KServe datatype (shape [2, 3], extremes included), shared by the OIP codec tests."""

from __future__ import annotations

import numpy as np

from server.oip.tensors import datatypes


def _ints(dtype: type) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.array([[info.min, 0, info.max], [1, info.max - 1, 7]], dtype=dtype)


SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    **{name: _ints(datatypes()[name].type) for name in ("UINT8", "UINT16", "UINT32", "UINT64")},
    **{name: _ints(datatypes()[name].type) for name in ("INT8", "INT16", "INT32", "INT64")},
    "FP16": np.array([[0.1, -65504.0, 65504.0], [6.1e-05, 0.0, -1.5]], dtype=np.float16),
    "FP32": np.array([[0.1, -3.4e38, 3.4e38], [1.17e-38, 0.0, -1.5]], dtype=np.float32),
    "FP64": np.array([[0.1, -1.7e308, 1.7e308], [2.2e-308, 1e-300, -1.5]], dtype=np.float64),
    "BYTES": np.array([[b"hello", "h\u00e9llo \u2603".encode(), b""], [b"a", b"{}", b"x" * 300]], dtype=object),
}
# BYTES that only the binary encodings can carry (not UTF-8, embedded NULs).
BINARY_BYTES = np.array([[b"\xff\xd8\xff\xe0", b"\x00\x01\x00"], [b"", b"\x80"]], dtype=object)
ALL = sorted(SAMPLES)


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    """Same shape, dtype and values (BYTES: object arrays of equal bytes)."""
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    if expected.dtype == object:
        assert actual.tolist() == expected.tolist()
        assert all(type(v) is bytes for v in actual.ravel())
    else:
        np.testing.assert_array_equal(actual, expected)

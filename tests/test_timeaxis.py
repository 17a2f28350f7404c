import numpy as np
import pytest

from wtalkit.timeaxis import SnippetGrid, resample_indices, segment_from_run


def test_thumos_grid_seconds():
    g = SnippetGrid(25.0, 16, 16)
    assert g.seconds_per_snippet == pytest.approx(0.64)
    assert g.to_seconds(0) == 0.0
    assert g.to_seconds(10) == pytest.approx(6.4)
    assert g.span(3) == pytest.approx((1.92, 2.56))
    assert segment_from_run(g, 2, 4) == pytest.approx((1.28, 3.2))


def test_inverse_and_vectorized():
    g = SnippetGrid(30.0, 16, 8)
    k = np.arange(100)
    np.testing.assert_allclose(g.to_snippet(g.to_seconds(k)), k)
    assert g.to_seconds(k).shape == (100,)
    # overlapping snippets still own one stride of time each
    assert g.span(1) == pytest.approx((8 / 30, 16 / 30))


def test_num_snippets_and_frames():
    g = SnippetGrid(25.0, 16, 16)
    assert g.num_snippets(15, partial=False) == 0
    assert g.num_snippets(16, partial=False) == 1
    assert g.num_snippets(47, partial=False) == 2
    assert [g.num_snippets(n) for n in (0, 1, 15, 16, 17, 47, 48)] == [0, 1, 1, 1, 2, 3, 3]
    assert g.frame_indices(2).tolist() == [39]  # centre frame (rounded down) of frames 32..47
    assert g.frame_indices(0, 3).tolist() == [0, 8, 15]


def test_resample_nearest_by_time():
    src = SnippetGrid(25.0, 8, 8)  # 0.32 s per snippet
    dst = SnippetGrid(25.0, 16, 16)  # 0.64 s per snippet
    idx = resample_indices(src, dst, 5, 10)
    assert idx.tolist() == [1, 3, 5, 7, 9]  # dst centre 0.32 s -> src snippet 1, ...
    assert resample_indices(dst, src, 4, 2).tolist() == [0, 0, 1, 1]


def test_invalid_grid():
    with pytest.raises(ValueError):
        SnippetGrid(0, 16, 16)
    with pytest.raises(ValueError):
        SnippetGrid(25, 0, 16)

"""Mask constructors and the split/merge plumbing."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfp_realnvp import channel_mask, checkerboard_mask
from tfp_realnvp.masks import MaskSplit, CountSplit


def test_checkerboard_mask():
    mask = checkerboard_mask((3, 4, 2))
    assert mask.shape == (3, 4, 2) and mask.dtype == bool
    np.testing.assert_array_equal(mask[..., 0], mask[..., 1])
    np.testing.assert_array_equal(mask[:, :, 0], [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]])
    np.testing.assert_array_equal(checkerboard_mask((3, 4), parity=1), ~checkerboard_mask((3, 4)))


def test_channel_mask():
    mask = channel_mask((2, 2, 4))
    np.testing.assert_array_equal(mask[0, 0], [True, True, False, False])
    np.testing.assert_array_equal(channel_mask((2, 2, 4), parity=1), ~mask)


def test_mask_constructor_errors():
    with pytest.raises(ValueError, match=r"rank >= 2; got shape \(4,\)"):
        checkerboard_mask((4,))
    with pytest.raises(ValueError, match="parity must be 0 or 1; got 2"):
        checkerboard_mask((2, 2), parity=2)
    with pytest.raises(ValueError, match=r"at least 2 channels .* got shape \(3, 1\)"):
        channel_mask((3, 1))


@pytest.mark.parametrize("num_masked", [1, 2, -1, -3])
def test_count_split_round_trip(num_masked):
    plumbing = CountSplit(num_masked)
    plumbing.bind((4,))
    x = tf.reshape(tf.range(8.0), [2, 4])
    kept, moved = plumbing.split(x)
    assert kept.shape[-1] == abs(num_masked) and moved.shape[-1] == 4 - abs(num_masked)
    expected_kept = x[:, :num_masked] if num_masked > 0 else x[:, num_masked:]
    np.testing.assert_array_equal(kept, expected_kept)
    np.testing.assert_array_equal(plumbing.merge(kept, moved), x)


def test_boolean_split_round_trip():
    mask = np.array([[True, False], [False, False]])
    plumbing = MaskSplit(mask)
    x = tf.constant([[[1.0, 2.0], [3.0, 4.0]]])
    masked, full = plumbing.split(x)
    np.testing.assert_array_equal(masked, [[[1.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_array_equal(plumbing.merge(masked, full * 10), [[[1.0, 20.0], [30.0, 40.0]]])
    shift, log_scale = plumbing.mask_params(tf.ones([1, 2, 2]), tf.ones([1, 2, 2]))
    np.testing.assert_array_equal(log_scale, [[[0.0, 1.0], [1.0, 1.0]]])

"""Masks: which coordinates of an event a coupling leaves unchanged, and the split/merge plumbing.

Two kinds of mask, following [1]:

- a *count* (`num_masked = d`): the first `d` coordinates of a vector event are unchanged
  (the last `|d|` when `d < 0`, as in `tfb.RealNVP`); the conditioner sees `x[..., :d]` and
  returns parameters for the other `D - d` coordinates;
- a *boolean mask* `b` over the event, of any rank (checkerboard and channel masks for
  images): the conditioner sees `b * x` and returns parameters over the whole event, of
  which only the entries where `b` is False are used.

The plumbing objects here split an event into the conditioner's input and the part to
transform, and merge the transformed part back; they hold no variables.

References:
  [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real NVP.
      ICLR 2017. https://arxiv.org/abs/1605.08803
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

__all__ = [
    "CountSplit",
    "MaskSplit",
    "channel_mask",
    "checkerboard_mask",
]


def checkerboard_mask(event_shape: Sequence[int], *, parity: int = 0) -> np.ndarray:
    """A checkerboard mask over `[height, width, ...]`, True where `(i + j) % 2 == parity`.

    Args:
      event_shape: The event shape, at least rank 2 (`[height, width]` or
        `[height, width, channels]`); trailing axes repeat the pattern.
      parity: 0 or 1; which squares are unchanged. Defaults to 0.

    Returns:
      A boolean numpy array of shape `event_shape`.

    Raises:
      ValueError: If `event_shape` has rank below 2 or `parity` is not 0 or 1.
    """
    event_shape = tuple(int(n) for n in event_shape)
    if len(event_shape) < 2:
        raise ValueError(f"checkerboard_mask needs an event of rank >= 2; got shape {event_shape}")
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1; got {parity!r}")
    i, j = np.indices(event_shape[:2])
    board = (i + j) % 2 == parity
    return np.broadcast_to(board.reshape(board.shape + (1,) * (len(event_shape) - 2)), event_shape).copy()


def channel_mask(event_shape: Sequence[int], *, parity: int = 0) -> np.ndarray:
    """A mask over the last axis: the first half of the channels unchanged (`parity=0`) or the second.

    Args:
      event_shape: The event shape; its last axis (channels) must have size >= 2.
      parity: 0 or 1; which half is unchanged. Defaults to 0.

    Returns:
      A boolean numpy array of shape `event_shape`.

    Raises:
      ValueError: If the last axis has fewer than 2 entries or `parity` is not 0 or 1.
    """
    event_shape = tuple(int(n) for n in event_shape)
    if not event_shape or event_shape[-1] < 2:
        raise ValueError(f"channel_mask needs at least 2 channels on the last axis; got shape {event_shape}")
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1; got {parity!r}")
    first_half = np.arange(event_shape[-1]) < event_shape[-1] // 2
    return np.broadcast_to(first_half == (parity == 0), event_shape).copy()


class CountSplit:
    """Plumbing for a vector event whose first `num_masked` coordinates are unchanged.

    `split(x) = (x[..., :d], x[..., d:])` and `merge` concatenates back (mirrored for
    negative counts); `transformed_shape` is `[D - d]` once the event size is known.
    """

    event_ndims = 1

    def __init__(self, num_masked: int) -> None:
        if isinstance(num_masked, bool) or not isinstance(num_masked, (int, np.integer)):
            raise TypeError(f"num_masked must be a Python int; got {num_masked!r}")
        self.num_masked = int(num_masked)
        self.event_shape: tuple[int, ...] | None = None

    def bind(self, event_shape: Sequence[int]) -> None:
        """Fixes the event shape, checking `num_masked` against it."""
        event_shape = tuple(event_shape)
        if len(event_shape) != 1:
            raise ValueError(f"num_masked needs a vector event; got event shape {event_shape}")
        size = event_shape[0]
        if not (1 <= abs(self.num_masked) <= size - 1):
            raise ValueError(
                f"num_masked={self.num_masked} is out of range for event size {size}: "
                f"expected 1 <= |num_masked| <= {size - 1}"
            )
        self.event_shape = event_shape
        # Sizes of the leading and trailing pieces of the event.
        kept = abs(self.num_masked)
        self._sizes = (kept, size - kept) if self.num_masked > 0 else (size - kept, kept)

    @property
    def conditioner_input_shape(self) -> tuple[int, ...]:
        return (abs(self.num_masked),)

    @property
    def transformed_shape(self) -> tuple[int, ...]:
        return (self.event_shape[0] - abs(self.num_masked),)

    def split(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        first, second = tf.split(x, self._sizes, axis=-1)
        return (first, second) if self.num_masked > 0 else (second, first)

    def merge(self, x_masked: tf.Tensor, y_transformed: tf.Tensor) -> tf.Tensor:
        pieces = [x_masked, y_transformed] if self.num_masked > 0 else [y_transformed, x_masked]
        return tf.concat(pieces, axis=-1)

    def mask_params(self, shift: tf.Tensor, log_scale: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return shift, log_scale


class MaskSplit:
    """Plumbing for an explicit boolean mask of any rank: True entries are unchanged.

    `split(x) = (where(mask, x, 0), x)`; the affine map acts on the whole event and `merge`
    selects the original entries where the mask is True, so those stay bit-identical.
    """

    def __init__(self, mask: np.ndarray | Sequence[bool]) -> None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"mask must be boolean; got dtype {mask.dtype}")
        if mask.ndim == 0:
            raise ValueError("mask must have at least one axis; got a scalar")
        if mask.all() or not mask.any():
            raise ValueError(
                f"mask must hold both True (unchanged) and False (transformed) entries; "
                f"got all {bool(mask.flat[0])} over shape {mask.shape}"
            )
        self.mask = mask
        self.event_ndims = mask.ndim
        self.event_shape = mask.shape

    def bind(self, event_shape: Sequence[int]) -> None:
        if tuple(event_shape) != self.mask.shape:
            raise ValueError(
                f"mask shape {self.mask.shape} does not match the event shape {tuple(event_shape)}"
            )

    @property
    def conditioner_input_shape(self) -> tuple[int, ...]:
        return self.mask.shape

    @property
    def transformed_shape(self) -> tuple[int, ...]:
        return self.mask.shape

    def split(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.where(self.mask, x, tf.zeros([], x.dtype)), x

    def merge(self, x_masked: tf.Tensor, y_transformed: tf.Tensor) -> tf.Tensor:
        # `x_masked` holds the original entries where the mask is True.
        return tf.where(self.mask, x_masked, y_transformed)

    def mask_params(self, shift: tf.Tensor, log_scale: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # Zeroed where unchanged: the log-det sums only transformed entries, and no
        # unused (possibly huge) log-scale can leak a NaN gradient through tf.where.
        zero = tf.zeros([], shift.dtype)
        return tf.where(self.mask, zero, shift), tf.where(self.mask, zero, log_scale)

"""Shared fixtures: the registry of coupling variants and the tolerances the tests use."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, settings

from tfp_realnvp import AffineCoupling, MLPConditioner, checkerboard_mask

# Property tests (tests/test_properties.py): the same examples on every run, no deadline (a
# first call traces TensorFlow functions), no example database left in the checkout.
settings.register_profile(
    "tfp_realnvp", deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("tfp_realnvp")

# Tolerances, with their reasons.
# float32 round trip through one coupling: exp(s) and exp(-s) with |s| ~ 1 lose a few ulps
# of relative precision on values of order 1 (eps32 ~ 1.2e-7).
RTOL32 = 1e-5
ATOL32 = 1e-5
# float64 round trip: same arithmetic at eps64 ~ 2.2e-16.
RTOL64 = 1e-10
ATOL64 = 1e-10
# Log-det against autodiff Jacobian + slogdet in float64: the LU factorisation of a
# well-conditioned [12, 12] matrix keeps ~1e-13 relative accuracy; 1e-6 is the bar.
LOGDET_RTOL = 1e-6


def tolerances(dtype: tf.DType) -> dict[str, float]:
    return dict(rtol=RTOL32, atol=ATOL32) if dtype == tf.float32 else dict(rtol=RTOL64, atol=ATOL64)


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named way of building an `AffineCoupling`: what the generic tests run over."""

    event_shape: tuple[int, ...]
    make: Callable[[str], AffineCoupling]

    @property
    def event_ndims(self) -> int:
        return len(self.event_shape)


def _count(event_size: int, num_masked: int, bound: str = "tanh") -> Variant:
    def make(dtype: str) -> AffineCoupling:
        conditioner = MLPConditioner(
            (16, 16), output_shape=(event_size - abs(num_masked),), dtype=dtype, seed=1
        )
        return AffineCoupling(
            conditioner, num_masked=num_masked, event_shape=(event_size,), log_scale_bound=bound
        )

    return Variant((event_size,), make)


def _mask(mask: np.ndarray, bound: str = "tanh") -> Variant:
    def make(dtype: str) -> AffineCoupling:
        conditioner = MLPConditioner((16, 16), event_ndims=mask.ndim, dtype=dtype, seed=1)
        return AffineCoupling(conditioner, mask=mask, log_scale_bound=bound)

    return Variant(mask.shape, make)


VARIANTS: dict[str, Variant] = {
    "count": _count(4, 2),
    "count_odd": _count(5, 2),
    "count_reversed": _count(5, -2),
    "count_one_masked": _count(3, 1),
    "mask_vector": _mask(np.array([True, False, False, True, False])),
    "mask_rank3_checkerboard": _mask(checkerboard_mask((2, 3, 2), parity=1)),
    "bound_sigmoid": _count(4, 2, bound="sigmoid"),
    "bound_unbounded": _count(4, -1, bound="unbounded"),
    "mask_unbounded": _mask(np.array([False, True, True]), bound="unbounded"),
}


def randomize(coupling_or_dist, seed: int = 0, scale: float = 0.4) -> None:
    """Gives every weight a random value (a fresh coupling is the identity, which proves little)."""
    rng = np.random.default_rng(seed)
    for v in coupling_or_dist.trainable_variables:
        v.assign(scale * rng.standard_normal(v.shape).astype(v.dtype.as_numpy_dtype))


def small_fitted_model():
    """A small FlowModel over 2-D rows, its standardisation fitted: what file and CLI tests save."""
    from tfp_realnvp import FlowModel

    model = FlowModel(2, num_couplings=2, hidden_units=(8,), seed=1)
    model.adapt(np.random.default_rng(0).standard_normal((200, 2)))
    return model


@pytest.fixture(params=sorted(VARIANTS), ids=sorted(VARIANTS))
def variant(request) -> Variant:
    return VARIANTS[request.param]


@pytest.fixture(params=["float32", "float64"])
def dtype(request) -> str:
    return request.param


# The files whose module fixtures train, convert or start processes, longest first: collected first,
# so that pytest-xdist (`--dist loadfile`, pyproject.toml) hands them out before the short files and
# the two workers finish together instead of one waiting on the other's last long file.
_LONG_FILES = ("test_distribution.py", "test_cli.py", "test_faults.py", "test_model.py", "test_export_runtimes.py",
               "test_properties.py", "test_readme.py", "test_export.py", "test_package.py", "test_backup.py", "test_multiscale.py",
               "test_training.py", "test_conditional.py", "test_inside_tfp.py", "test_shipped_models.py")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return _LONG_FILES.index(name) if name in _LONG_FILES else len(_LONG_FILES)

    items.sort(key=rank)  # stable: a file's own tests keep their order

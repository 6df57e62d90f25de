"""Figures of a trained flow, written as PNG: the learned density, samples beside data, loss curves.

Each `*_figure` function returns a `matplotlib.figure.Figure` built without pyplot (no global
state, no GUI backend: PNGs are rendered by Agg), and `save_figure` writes one to a new file.
`plot_run` draws every figure that fits the model and writes them into a directory:

* `density.png`: for 2-D vector data, the learned density `p(x) = exp(log_prob(x))` on a grid, as a
  heat map with a colour bar and the data over it;
* `samples.png`: samples beside data (scatter plots in the same limits, the first two features
  of the flattened event when there are more than two), or for image data (events of shape
  `[H, W]` or `[H, W, 1]`, or integer vectors with a square number of features, such as the
  8x8 digits) real images beside grids of sampled ones at temperatures 1.0 and 0.7
  (`IMAGE_TEMPERATURES`), drawn from the same latent draws;
* `loss.png`: the training and validation NLL per epoch, from a Keras `History.history` dict;
* `classes.png`: for a model conditioned on one-hot classes (`train --condition-on-label`),
  samples of each class: a row of images per class, or for 2-D data a colour per class.

A conditional model draws its samples at the data's contexts (the `context` rows that go with
`data`), so samples and data share the distribution of contexts, and its density map is the
marginal `p(x) = sum_c w_c p(x | c)` over the data's distinct contexts (with their frequencies
`w_c`, when there are at most 16).

Example:

    >>> import numpy as np
    >>> from tfp_realnvp import FlowModel, plots
    >>> model = FlowModel(2, num_couplings=2, hidden_units=(8,))
    >>> x = np.random.default_rng(0).standard_normal((500, 2)).astype("float32")
    >>> model.adapt(x)
    >>> paths = plots.plot_run(model, "figures", data=x, history={"loss": [2.9, 2.8]})
    >>> sorted(p.name for p in paths)
    ['density.png', 'loss.png', 'samples.png']
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from tfp_realnvp.files import check_new, write_new
from tfp_realnvp.training import best_epoch

if TYPE_CHECKING:
    from tfp_realnvp.model import FlowModel

__all__ = [
    "CLASSES_FILE",
    "DENSITY_FILE",
    "IMAGE_TEMPERATURES",
    "LOSS_FILE",
    "PLOT_FILES",
    "SAMPLES_FILE",
    "best_epoch",
    "classes_figure",
    "density_figure",
    "image_shape",
    "loss_figure",
    "plot_run",
    "samples_figure",
    "save_figure",
]

DENSITY_FILE = "density.png"
SAMPLES_FILE = "samples.png"
LOSS_FILE = "loss.png"
CLASSES_FILE = "classes.png"
PLOT_FILES = (DENSITY_FILE, SAMPLES_FILE, LOSS_FILE, CLASSES_FILE)
"""Every file `plot_run` may write."""

IMAGE_TEMPERATURES = (1.0, 0.7)
"""The temperatures of the sampled image grids: the model's own density, and the more typical
samples the Real NVP and Glow papers show."""

DPI = 100  # figure sizes below are in inches: pixels = inches * DPI
_DENSITY_WIDTH = 6.4  # inches; 2-D figures take the height the data's aspect ratio asks for
_PAIR_WIDTH = 10.0
_IMAGE_PANEL_WIDTH, _IMAGES_HEIGHT = 4.6, 5.0  # one mosaic; the colour bar takes about 0.8 more
_LOSS_SIZE = (7.0, 4.5)
_MAX_POINTS = 2000  # points drawn per scatter plot: more only hides the density
_IMAGE_GRID = 8  # sampled images per side of the image grid
_MAX_MIXTURE = 16  # distinct contexts at most in a conditional model's density map


def image_shape(model: FlowModel) -> tuple[int, int] | None:
    """`(height, width)` for image data, else None.

    Events of shape `[H, W]` or `[H, W, 1]` are greyscale images. So is a model of integer
    data (`integer_levels` set) over vectors whose size is a perfect square, such as the 64
    pixels of the 8x8 digits, drawn as square images.
    """
    shape = tuple(model.event_shape)
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return shape[:2]
    side = math.isqrt(model.event_size)
    if len(shape) == 1 and model.get_config().get("integer_levels") and side * side == model.event_size and side > 1:
        return (side, side)
    return None


def _rows(model: FlowModel, data: np.ndarray | None) -> np.ndarray | None:
    """`data` as float64 rows `[n, event_size]`: examples of the model's event shape, flattened.

    Raises:
      ValueError: If `data` is neither `[n, *event_shape]` nor `[n, event_size]`.
    """
    if data is None:
        return None
    data = np.asarray(data, np.float64)
    if data.ndim >= 1 and (data.shape[1:] == tuple(model.event_shape) or data.shape[1:] == (model.event_size,)):
        return data.reshape(len(data), model.event_size)
    raise ValueError(
        f"data of shape {data.shape} does not match the model's event shape {tuple(model.event_shape)}"
    )


def _limits(points: np.ndarray, margin: float = 0.1) -> list[tuple[float, float]]:
    """Per-feature plot limits: the central 99.5% of the points, widened by `margin` each side."""
    low, high = np.percentile(points, [0.25, 99.75], axis=0)
    span = np.maximum(high - low, 1e-6)
    return [(float(lo - margin * s), float(hi + margin * s)) for lo, hi, s in zip(low, high, span)]


def _height(limits: list[tuple[float, float]], panel_width: float, extra: float) -> float:
    """Figure height (inches, whole pixels) for 2-D panels `panel_width` wide at equal aspect."""
    aspect = (limits[1][1] - limits[1][0]) / (limits[0][1] - limits[0][0])
    return round(panel_width * min(max(aspect, 0.35), 2.5) + extra, 2)


def _subset(points: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    if len(points) <= size:
        return points
    return points[np.random.default_rng(seed).choice(len(points), size, replace=False)]


def _samples(model: FlowModel, num_samples: int, seed: int, temperature: float,
             context: np.ndarray | None = None) -> np.ndarray:
    """Samples as flattened float64 rows `[num_samples, event_size]` (at `context`'s rows, if given)."""
    if context is not None:
        context = context.astype(model.get_config()["flow_dtype"])
    samples = np.asarray(model.sample(num_samples, seed=seed, temperature=temperature, context=context),
                         dtype=np.float64)
    return samples.reshape(num_samples, model.event_size)


def _contexts(model: FlowModel, context: np.ndarray | None, count: int, seed: int) -> np.ndarray | None:
    """`count` context rows to sample a conditional model at: the subset `_subset` picks, repeated if short.

    Raises:
      ValueError: If a conditional model gets no context, or an unconditional one gets one.
    """
    if not model.context_size:
        if context is not None:
            raise ValueError("the model takes no context (context_size=0); got context rows")
        return None
    if context is None or not len(context):
        raise ValueError(f"a conditional model's samples need context rows [n, {model.context_size}]: pass "
                         "context=, e.g. the test rows' contexts")
    picked = _subset(np.asarray(context, np.float64), count, seed)
    return np.resize(picked, (count, picked.shape[1]))


def _is_one_hot(context: np.ndarray) -> bool:
    return bool(context.ndim == 2 and np.all((context == 0) | (context == 1)) and np.all(context.sum(axis=1) == 1))


def _log_prob(model: FlowModel, x: np.ndarray, batch_size: int = 16384,
              context: np.ndarray | None = None) -> np.ndarray:
    dtype = model.get_config().get("flow_dtype", "float32")
    context = None if context is None else context.astype(dtype)
    parts = [np.asarray(model.log_prob(x[i:i + batch_size].astype(dtype), context=context))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).astype(np.float64)


def _mixture(context: np.ndarray | None) -> list[tuple[np.ndarray | None, float]]:
    """`(context row [1, C], weight)` for each distinct row (an unconditional model: `[(None, 1)]`).

    Raises:
      ValueError: For more than 16 distinct contexts (a continuous context has no small mixture).
    """
    if context is None:
        return [(None, 1.0)]
    rows, counts = np.unique(np.asarray(context, np.float64), axis=0, return_counts=True)
    if len(rows) > _MAX_MIXTURE:
        raise ValueError(f"a conditional model's density map is the mixture over the data's distinct contexts, at "
                         f"most {_MAX_MIXTURE}; got {len(rows)}")
    return [(row[None], count / counts.sum()) for row, count in zip(rows, counts)]


def density_figure(
    model: FlowModel,
    *,
    data: np.ndarray | None = None,
    context: np.ndarray | None = None,
    grid_size: int = 200,
    title: str | None = None,
    seed: int = 0,
) -> Figure:
    """The learned density of a 2-D model as a heat map, with the data over it.

    `exp(log_prob)` on a `grid_size x grid_size` grid covering the data (or, without data, the
    model's samples), with a colour bar, equal aspect, and up to 2000 data points. For a
    conditional model, the marginal over the data's distinct contexts, weighted by frequency.

    Args:
      model: A `FlowModel` over vectors of size 2.
      data: Rows `[n, 2]` to draw over the density and to set the limits. Defaults to
        None (limits from 5000 samples).
      context: A conditional model's context rows, one per data row. Defaults to None.
      grid_size: Grid points per axis. Defaults to 200.
      title: Figure title. Defaults to "Learned density".
      seed: Seed of the samples (without data) and of the subset of points drawn. Defaults to 0.

    Raises:
      ValueError: If the model's event size is not 2, `data` has another width, or a
        conditional model's context is missing or has more than 16 distinct rows.
    """
    if tuple(model.event_shape) != (2,):
        raise ValueError(f"a density plot needs 2-D data; the model's event shape is {tuple(model.event_shape)}")
    data = _rows(model, data)
    _contexts(model, context, 1, seed)  # a conditional model needs its context, an unconditional none
    mixture = _mixture(context)
    reference = data if data is not None and len(data) else _samples(model, 5000, seed, 1.0,
                                                                       _contexts(model, context, 5000, seed))
    limits = _limits(reference)
    fig = Figure(figsize=(_DENSITY_WIDTH, _height(limits, 4.9, 0.9)), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    xs = np.linspace(*limits[0], grid_size)
    ys = np.linspace(*limits[1], grid_size)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    density = sum(weight * np.exp(_log_prob(model, grid, context=row)) for row, weight in mixture).reshape(gx.shape)
    image = ax.imshow(
        density, origin="lower", extent=(*limits[0], *limits[1]), cmap="viridis",
        interpolation="bilinear", aspect="equal",
    )
    fig.colorbar(image, ax=ax, label="p(x) = exp(log_prob(x))", shrink=0.85)
    if data is not None:
        shown = _subset(data, _MAX_POINTS, seed)
        ax.scatter(shown[:, 0], shown[:, 1], s=1.5, c="white", alpha=0.35, linewidths=0,
                   label=f"data ({len(shown)} points)")
        ax.legend(loc="upper right", fontsize="small", markerscale=6, framealpha=0.6)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title or "Learned density")
    return fig


def _mosaic(images: np.ndarray, shape: tuple[int, int], per_side: int) -> np.ndarray:
    """Tiles up to `per_side**2` flat images into one array, with a 1-pixel gap (NaN) between them."""
    h, w = shape
    mosaic = np.full((per_side * (h + 1) - 1, per_side * (w + 1) - 1), np.nan)
    for k, image in enumerate(images[: per_side * per_side]):
        r, c = divmod(k, per_side)
        mosaic[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = image.reshape(shape)
    return mosaic


def _temperatures(temperature: float | Sequence[float] | None, images: bool) -> tuple[float, ...]:
    if temperature is None:
        return IMAGE_TEMPERATURES if images else (1.0,)
    values = (temperature,) if isinstance(temperature, (int, float, np.number)) else tuple(temperature)
    if not values or any(not (isinstance(t, (int, float, np.number)) and t > 0) for t in values):
        raise ValueError(f"temperature must be a positive number or a sequence of them; got {temperature!r}")
    if not images and len(values) > 1:
        raise ValueError(f"scatter plots show samples at one temperature; got {list(values)}")
    return tuple(float(t) for t in values)


def samples_figure(
    model: FlowModel,
    *,
    data: np.ndarray | None = None,
    context: np.ndarray | None = None,
    num_samples: int = _MAX_POINTS,
    seed: int = 0,
    temperature: float | Sequence[float] | None = None,
    title: str | None = None,
) -> Figure:
    """Samples of the model beside the data, in the same limits.

    A conditional model samples at the contexts of the data subset shown (the same rows).

    Image models (see `image_shape`) get 64 real images beside an 8x8 grid of sampled images
    per temperature, all drawn from the same latent draws (scaled by each temperature): for
    integer data the dequantized samples floored back to the integer levels, in grey levels
    `0 .. integer_levels - 1`. Other models get scatter plots with equal aspect (of the first
    two entries of the flattened event when there are more).

    Args:
      model: A `FlowModel`.
      data: Examples `[n, *event_shape]` (or flattened, `[n, event_size]`). Defaults to None
        (samples only).
      context: A conditional model's context rows, one per data row. Defaults to None.
      num_samples: Samples drawn for the scatter plots. Defaults to 2000.
      seed: Seed of the samples and of the subset of data shown. Defaults to 0.
      temperature: Standard deviation of the latent normal: one, or for image models several
        (a grid each). Defaults to `None`: `IMAGE_TEMPERATURES` (1.0 and 0.7) for images, 1.0
        for scatter plots.
      title: Figure title. Defaults to a description of the panels.

    Raises:
      ValueError: If `data` does not have the model's event shape, the context does not fit
        the model, or a temperature is not positive (or several are given for a scatter plot).
    """
    d = model.event_size
    data = _rows(model, data)
    if data is not None and context is not None and len(context) != len(data):
        raise ValueError(f"context has {len(context)} rows for {len(data)} data rows; expected one per row")
    shape = image_shape(model)
    temperatures = _temperatures(temperature, images=shape is not None)
    if shape is not None:
        levels = model.get_config().get("integer_levels")
        count = _IMAGE_GRID * _IMAGE_GRID
        contexts = _contexts(model, context, count, seed)
        shown_data = _subset(data, count, seed) if data is not None else None
        panels = [(_samples(model, count, seed, t, contexts), f"Samples (T={t:g})") for t in temperatures]
        if levels:  # dequantized samples, floored back to the integer levels
            panels = [(model.to_levels(samples), name) for samples, name in panels]
            value_range, label = (0, levels - 1), f"pixel level (0..{levels - 1})"
        else:  # continuous values: the central 99% of what is shown
            shown = np.concatenate([p[0] for p in panels]) if shown_data is None else shown_data
            low, high = np.percentile(shown, [0.5, 99.5])
            value_range, label = (float(low), float(max(high, low + 1e-6))), "value"
        if shown_data is not None:
            panels.insert(0, (shown_data, "Data"))
        fig = Figure(figsize=(_IMAGE_PANEL_WIDTH * len(panels) + 0.8, _IMAGES_HEIGHT), dpi=DPI,
                     layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(panels)))
        cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="#9ab8d6")  # the gaps between images
        for ax, (images, name) in zip(axes, panels):
            drawn = ax.imshow(_mosaic(images, shape, _IMAGE_GRID), cmap=cmap, vmin=value_range[0],
                              vmax=value_range[1], interpolation="nearest")
            ax.set_title(f"{name}: {min(len(images), count)} of {shape[0]}x{shape[1]}")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(drawn, ax=list(axes), label=label, shrink=0.8)
        fig.suptitle(title or "Sampled images beside real ones")
        return fig

    (temperature,) = temperatures
    t = f"T={temperature:g}"
    samples = _samples(model, num_samples, seed, temperature, _contexts(model, context, num_samples, seed))
    shown_data = _subset(data, num_samples, seed) if data is not None else None
    limits = _limits(np.concatenate([shown_data, samples]) if shown_data is not None else samples)
    panels = [(samples, f"Samples ({len(samples)}, {t})", "C1")]
    if shown_data is not None:
        panels.insert(0, (shown_data, f"Data ({len(shown_data)} points)", "C0"))
    fig = Figure(figsize=(_PAIR_WIDTH, _height(limits, 4.5, 1.2)), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, (points, name, colour) in zip(axes, panels):
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color=colour, linewidths=0)
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(name)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    heading = title or ("Samples beside data" if shown_data is not None else "Samples")
    if d > 2:
        heading += f" (features 1 and 2 of {d})"
    fig.suptitle(heading)
    return fig


def classes_figure(
    model: FlowModel,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    per_class: int | None = None,
    title: str | None = None,
) -> Figure:
    """Samples of a model conditioned on one-hot classes, class by class.

    Image models get a row of `per_class` images (default 10) per class; 2-D models a scatter
    of `per_class` samples (default 500) per class, a colour each.

    Raises:
      ValueError: If the model is not conditional.
    """
    classes = model.context_size
    if not classes:
        raise ValueError("a class-conditional figure needs a conditional model; this one has context_size=0")
    shape = image_shape(model)
    per_class = per_class or (10 if shape is not None else 500)
    one_hot = np.repeat(np.eye(classes), per_class, axis=0)  # class k's rows, then class k + 1's
    samples = _samples(model, len(one_hot), seed, temperature, one_hot)
    t = f"T={temperature:g}"
    if shape is not None:
        levels = model.get_config().get("integer_levels")
        if levels:
            samples = model.to_levels(samples)
        h, w = shape
        mosaic = np.full((classes * (h + 1) - 1, per_class * (w + 1) - 1), np.nan)
        for k, image in enumerate(samples):
            r, c = divmod(k, per_class)
            mosaic[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = image.reshape(shape)
        fig = Figure(figsize=(max(4.0, 0.55 * per_class + 1.5), 0.55 * classes + 1.0), dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="#9ab8d6")
        ax.imshow(mosaic, cmap=cmap, vmin=0 if levels else np.nanmin(mosaic),
                  vmax=levels - 1 if levels else np.nanmax(mosaic), interpolation="nearest")
        ax.set_yticks([r * (h + 1) + h / 2 - 0.5 for r in range(classes)], [f"class {k}" for k in range(classes)])
        ax.set_xticks([])
        ax.set_title(title or f"Samples by class ({t}): a row per class")
        return fig
    limits = _limits(samples)
    fig = Figure(figsize=(_DENSITY_WIDTH, _height(limits, 4.9, 0.9)), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for k in range(classes):
        points = samples[k * per_class:(k + 1) * per_class]
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.6, color=f"C{k % 10}", linewidths=0, label=f"class {k}")
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize="small", markerscale=4)
    heading = title or f"Samples by class ({per_class} each, {t})"
    ax.set_title(heading + (f" (features 1 and 2 of {model.event_size})" if model.event_size > 2 else ""))
    return fig


def loss_figure(history: Mapping[str, Sequence[float]], *, title: str | None = None) -> Figure:
    """Training and validation NLL per epoch, from a Keras `History.history` dict.

    Plots `loss` and, when present, `val_loss`, and marks the epoch with the lowest validation
    (else training) loss, the one `EarlyStopping(restore_best_weights=True)` keeps. Every finite
    point is shown: when the first epochs' large values would squash the end of training (the
    range of all points more than 4 times that of the last 90%), a second panel below zooms on
    the range `_loss_limits` gives, while the top panel keeps every point.

    Args:
      history: `{"loss": [...], "val_loss": [...], ...}`, one value per epoch.
      title: Figure title. Defaults to "Training curves".

    Raises:
      ValueError: If `history` has no `loss` values.
    """
    loss = [float(v) for v in history.get("loss", ())]
    if not loss:
        raise ValueError(f"history has no 'loss' values to plot; got keys {sorted(history)}")
    val = [float(v) for v in history.get("val_loss", ())]
    whole, zoom = _loss_limits(loss + val)
    fig = Figure(figsize=_LOSS_SIZE if zoom is None else (_LOSS_SIZE[0], _LOSS_SIZE[1] * 1.6), dpi=DPI,
                 layout="constrained")
    axes = [fig.add_subplot(2 if zoom else 1, 1, i + 1) for i in range(2 if zoom else 1)]
    monitored = val or loss
    best = best_epoch(monitored)
    for ax, limits in zip(axes, (whole, zoom)):
        ax.plot(np.arange(1, len(loss) + 1), loss, marker="." if len(loss) < 40 else None, label="training")
        if val:
            ax.plot(np.arange(1, len(val) + 1), val, marker="." if len(val) < 40 else None, label="validation")
        if best is not None:
            ax.axvline(best, color="0.5", linestyle="--", linewidth=1,
                       label=f"best epoch {best}: {monitored[best - 1]:.4f}")
        if limits is not None:
            ax.set_ylim(*limits)
        ax.set_ylabel("NLL (nats per example)")
        ax.set_xlim(0.5, max(len(loss), len(val)) + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
    axes[-1].set_xlabel("epoch")
    if zoom is not None:
        axes[1].set_title("the end of training, zoomed", fontsize="medium")
    axes[0].set_title(title or "Training curves")
    return fig


def _loss_limits(values: Sequence[float]) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """`(all points, zoom)` y limits of `loss_figure`; the zoom is `None` when all points read well.

    The first holds every finite value (with a margin). The zoom spans the lowest value to the
    90th percentile, shown when the whole range is more than 4 times that: the first epochs'
    values (1.82 nats against an end near 0.3 on two moons) fell off the only panel there was.
    """
    finite = np.array([v for v in values if math.isfinite(v)])
    if len(finite) == 0:
        return None, None
    low, high = float(finite.min()), float(finite.max())
    pad = 0.05 * max(high - low, 1e-3)
    whole = (low - pad, high + pad)
    if len(finite) <= 2:
        return whole, None
    top = float(np.percentile(finite, 90))
    if high - low <= 4 * (top - low):
        return whole, None
    pad = 0.08 * max(top - low, 1e-3)
    return whole, (low - pad, top + 3 * pad)


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> pathlib.Path:
    """Writes `fig` as a PNG at `path`, never over an existing file.

    The PNG is rendered to a temporary file in the same directory and then linked to `path`,
    so `path` appears complete or not at all.

    Raises:
      FileExistsError: If `path` exists.
    """
    return write_new(path, lambda partial: fig.savefig(partial, format="png", dpi=DPI))


def plot_run(
    model: FlowModel,
    directory: str | os.PathLike[str],
    *,
    data: np.ndarray | None = None,
    context: np.ndarray | None = None,
    history: Mapping[str, Sequence[float]] | None = None,
    seed: int = 0,
    temperature: float | Sequence[float] | None = None,
    title: str | None = None,
) -> list[pathlib.Path]:
    """Writes every figure that fits the model into `directory` (created if missing); returns their paths.

    `density.png` for models of 2-D vectors (a conditional one's when its data have at most 16
    distinct contexts), `samples.png` always (a conditional model's needs the data's
    `context`), `loss.png` when `history` has losses, `classes.png` for a model conditioned on
    one-hot classes. `title` (e.g. the dataset's name) prefixes each figure's title;
    `temperature` is `samples_figure`'s (by default 1.0 and 0.7 for images, 1.0 otherwise);
    `classes.png` uses the first.

    Raises:
      FileExistsError: If one of the files exists already (nothing is overwritten).
      ValueError: If `data` does not have the model's event shape, or the context does not fit.
    """
    directory = pathlib.Path(directory)
    _contexts(model, context, 1, seed)  # a missing or unexpected context fails before anything is drawn
    distinct = len(np.unique(np.asarray(context), axis=0)) if context is not None else 1
    draw_density = tuple(model.event_shape) == (2,) and distinct <= _MAX_MIXTURE
    draw_loss = bool(history and history.get("loss"))
    draw_classes = context is not None and _is_one_hot(np.asarray(context))
    names = ([DENSITY_FILE] * draw_density + [SAMPLES_FILE] + [LOSS_FILE] * draw_loss
             + [CLASSES_FILE] * draw_classes)
    for name in names:  # before drawing anything: a refusal costs no sampling
        check_new(directory / name)
    prefix = f"{title}: " if title else ""
    figures = []
    if draw_density:
        figures.append((DENSITY_FILE, density_figure(model, data=data, context=context, seed=seed,
                                                     title=f"{prefix}learned density")))
    figures.append((SAMPLES_FILE, samples_figure(model, data=data, context=context, seed=seed,
                                                 temperature=temperature,
                                                 title=f"{prefix}samples beside data" if title else None)))
    if draw_loss:
        figures.append((LOSS_FILE, loss_figure(history, title=f"{prefix}training curves")))
    if draw_classes:
        first = _temperatures(temperature, images=True)[0]
        figures.append((CLASSES_FILE, classes_figure(model, seed=seed, temperature=first,
                                                     title=f"{prefix}samples by class, a row per class"
                                                     if image_shape(model) is not None and title else None)))
    directory.mkdir(parents=True, exist_ok=True)
    return [save_figure(fig, directory / name) for name, fig in figures]

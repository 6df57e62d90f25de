"""plots: each figure renders to a PNG of the size it asks for, and nothing is overwritten."""

from __future__ import annotations

import pathlib
import struct

import numpy as np
import pytest

from tfp_realnvp import FlowModel
from tfp_realnvp import plots

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: pathlib.Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which a PNG must start with."""
    head = path.read_bytes()[:24]
    assert head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _expected_size(fig) -> tuple[int, int]:
    width, height = fig.get_size_inches() * plots.DPI
    return round(width), round(height)


def _model(event_size: int, **kwargs) -> FlowModel:
    model = FlowModel(event_size, num_couplings=2, hidden_units=(8,), **kwargs)
    return model


@pytest.fixture(scope="module")
def model_2d() -> tuple[FlowModel, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(400, 2)).astype("float32") * [2.0, 0.5]
    model = _model(2)
    model.adapt(x)
    return model, x


def test_plot_run_writes_every_figure_at_its_size(model_2d, tmp_path):
    model, x = model_2d
    history = {"loss": [3.0, 2.5, 2.4], "val_loss": [3.1, 2.6, 2.5]}
    paths = plots.plot_run(model, tmp_path, data=x, history=history, title="toy")
    assert sorted(p.name for p in paths) == [plots.DENSITY_FILE, plots.LOSS_FILE, plots.SAMPLES_FILE]
    figures = {
        plots.DENSITY_FILE: plots.density_figure(model, data=x),
        plots.SAMPLES_FILE: plots.samples_figure(model, data=x),
        plots.LOSS_FILE: plots.loss_figure(history),
    }
    for path in paths:
        # A blank figure of these sizes compresses to a few kB; drawn curves and colour maps add tens.
        assert path.stat().st_size > 10_000, f"{path.name} is nearly empty"
        assert _png_size(path) == _expected_size(figures[path.name]), path.name


def test_density_figure_is_a_heat_map_with_a_colour_bar_and_equal_aspect(model_2d):
    model, x = model_2d
    fig = plots.density_figure(model, data=x, grid_size=20)
    ax, colour_bar = fig.axes
    assert ax.images[0].get_array().shape == (20, 20)
    assert "exp(log_prob" in colour_bar.get_ylabel()
    assert ax.get_aspect() == 1.0
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    # The data span 4x wider than tall: the figure follows (equal aspect without empty bands).
    width, height = fig.get_size_inches()
    assert height < width


def test_density_without_data_uses_samples_for_its_limits(model_2d, tmp_path):
    model, _ = model_2d
    path = plots.save_figure(plots.density_figure(model, grid_size=20), tmp_path / "d.png")
    assert _png_size(path)[0] == round(plots._DENSITY_WIDTH * plots.DPI)


def test_samples_figure_puts_samples_beside_data_in_the_same_limits(model_2d):
    model, x = model_2d
    fig = plots.samples_figure(model, data=x, num_samples=300)
    data_ax, samples_ax = fig.axes
    assert data_ax.get_title().startswith("Data") and samples_ax.get_title().startswith("Samples")
    assert data_ax.get_xlim() == samples_ax.get_xlim() and data_ax.get_ylim() == samples_ax.get_ylim()
    assert len(samples_ax.collections[0].get_offsets()) == 300


def test_samples_figure_draws_images_for_integer_models(tmp_path):
    model = _model(16, integer_levels=5, logit_alpha=0.05)
    real = np.random.default_rng(0).integers(0, 5, size=(100, 16)).astype("float32")
    model.adapt(real)
    assert plots.image_shape(model) == (4, 4)
    fig = plots.samples_figure(model, data=real)
    data_ax, hot_ax, cool_ax, _ = fig.axes  # real images, two temperatures, the colour bar
    assert data_ax.images[0].get_array().shape == (8 * 5 - 1, 8 * 5 - 1)  # 8x8 images of 4x4, 1-pixel gaps
    assert [ax.get_title().split(":")[0] for ax in fig.axes[:3]] == ["Data", "Samples (T=1)", "Samples (T=0.7)"]
    assert plots.IMAGE_TEMPERATURES == (1.0, 0.7)
    # The same latent draws at both temperatures: the cooler grid is a different picture of them.
    hot, cool = hot_ax.images[0].get_array(), cool_ax.images[0].get_array()
    assert hot.shape == cool.shape and not np.ma.allequal(hot, cool)
    paths = plots.plot_run(model, tmp_path, data=real)
    assert [p.name for p in paths] == [plots.SAMPLES_FILE]  # no density for 16-D data, no history
    assert _png_size(paths[0]) == _expected_size(fig)
    one = plots.samples_figure(model, temperature=0.5)  # no data, one temperature: one grid
    assert [ax.get_title().split(":")[0] for ax in one.axes[:-1]] == ["Samples (T=0.5)"]


def test_image_events_are_drawn_as_images():
    model = FlowModel(event_shape=(4, 4, 1), flow="real_nvp_multiscale", num_scales=1, num_final_couplings=1,
                      num_filters=2, num_blocks=0, standardize=False)
    assert plots.image_shape(model) == (4, 4)
    fig = plots.samples_figure(model, data=np.zeros((10, 4, 4, 1)), temperature=[1.0, 0.7, 0.5])
    assert len(fig.axes) == 5  # data, three grids, the colour bar


def test_more_than_two_features_show_the_first_two(tmp_path):
    x = np.random.default_rng(0).normal(size=(300, 3)).astype("float32")
    model = _model(3)
    model.adapt(x)
    paths = plots.plot_run(model, tmp_path, data=x)
    assert [p.name for p in paths] == [plots.SAMPLES_FILE]  # a density map needs 2-D data
    assert "features 1 and 2 of 3" in plots.samples_figure(model, data=x).get_suptitle()


def test_loss_figure_marks_the_best_validation_epoch():
    fig = plots.loss_figure({"loss": [3.0, 2.0, 1.5, 1.4], "val_loss": [3.0, 2.1, 1.6, 1.7]})
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["training", "validation"]
    assert labels[2] == "best epoch 3: 1.6000"
    assert ax.get_xlabel() == "epoch" and "NLL" in ax.get_ylabel()


def test_loss_figure_shows_every_point():
    # Two moons' first epochs (1.82 to 0.99 nats) fell off the y-axis, cut at the 90th percentile.
    loss = [1.82, 0.99, *np.linspace(0.45, 0.30, 28)]
    val = [1.5, 0.9, *np.linspace(0.44, 0.31, 28)]
    fig = plots.loss_figure({"loss": loss, "val_loss": val})
    whole, zoom = fig.axes
    low, high = whole.get_ylim()
    assert low < min(loss + val) and high > max(loss + val)  # every point on the top panel
    assert zoom.get_ylim()[1] < 0.99 and zoom.get_ylim()[0] < 0.30  # the zoom keeps the end readable
    # A history without a long fall needs no zoom: one panel, every point on it.
    (ax,) = plots.loss_figure({"loss": [1.0, 0.9, 0.8, 0.75, 0.7]}).axes
    assert ax.get_ylim()[0] < 0.7 and ax.get_ylim()[1] > 1.0


def test_best_epoch_is_the_first_lowest_finite_value():
    # Shared by loss.png's marker and the CLI's metrics.json, so the two cannot disagree.
    assert plots.best_epoch([3.0, 1.0, float("nan"), 1.0, 2.0]) == 2
    assert plots.best_epoch([float("nan"), float("inf"), 5.0]) == 3
    assert plots.best_epoch([float("nan"), float("inf")]) is None
    assert plots.best_epoch([]) is None


def test_save_figure_never_overwrites(model_2d, tmp_path, monkeypatch):
    path = tmp_path / "loss.png"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="loss.png already exists; not overwriting it"):
        plots.save_figure(plots.loss_figure({"loss": [1.0, 0.5]}), path)
    assert path.read_bytes() == b"precious"
    model, x = model_2d
    drawn = []
    for name in ("density_figure", "samples_figure", "loss_figure"):
        monkeypatch.setattr(plots, name, lambda *args, _name=name, **kwargs: drawn.append(_name))
    with pytest.raises(FileExistsError, match="loss.png already exists"):
        plots.plot_run(model, tmp_path, data=x, history={"loss": [1.0, 0.5]})
    assert drawn == []  # checked before drawing anything
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]


def test_bad_arguments_are_named():
    model = _model(3)
    with pytest.raises(ValueError, match=r"needs 2-D data; the model's event shape is \(3,\)"):
        plots.density_figure(model)
    with pytest.raises(ValueError, match=r"data of shape \(5, 2\) does not match the model's event shape \(3,\)"):
        plots.samples_figure(model, data=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="history has no 'loss' values"):
        plots.loss_figure({"val_loss": [1.0]})
    with pytest.raises(ValueError, match=r"scatter plots show samples at one temperature; got \[1.0, 0.7\]"):
        plots.samples_figure(model, temperature=(1.0, 0.7))
    with pytest.raises(ValueError, match="temperature must be a positive number or a sequence of them; got -1"):
        plots.samples_figure(model, temperature=-1)

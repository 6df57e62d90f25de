"""TrainingBackup and fit_flow(backup_dir=...): an interrupted run continues where it stopped.

Interruptions here are exceptions raised from a callback at the start of an epoch, in this
process (tests/test_faults.py kills real processes). The runs are full-batch (one step per
epoch), so the order of the rows does not matter and a resumed run must match an uninterrupted
one to float32 summation order: everything the backup restores (weights, the optimizer and its
iteration count behind the learning-rate schedule, early stopping, the history) shows.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from tfp_realnvp import FlowModel
from tfp_realnvp.backup import STATE_FILE, TrainingBackup
from tfp_realnvp.data import load_dataset
from tfp_realnvp.training import TrainingConfig, fit_flow

# 540 fitted rows in one batch of 540, 4 epochs; lr 1e-2 so that each epoch moves the weights.
FULL_BATCH = dict(num_train=600, num_test=200, epochs=4, batch_size=540, jit_compile=False, learning_rate=1e-2,
                  flow_options={"num_couplings": 2, "hidden_units": [16]})
# Same rows, same ops, one thread pool: the float32 sums of a batch may be taken in another order.
RTOL = 1e-5


class Interrupted(Exception):
    """What the interrupting callback raises: a kill, as fit sees it."""


class InterruptAt(keras.callbacks.Callback):
    """Raises Interrupted at the start of epoch `epoch` (0-based) of the `fit` numbered `fit` (0-based)."""

    def __init__(self, epoch: int, fit: int = 0) -> None:
        super().__init__()
        self.epoch, self.fit, self.fits = epoch, fit, -1

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_epoch_begin(self, epoch, logs=None):
        if self.fits == self.fit and epoch == self.epoch:
            raise Interrupted(f"epoch {epoch}")


class CountFits(keras.callbacks.Callback):
    fits = 0

    def on_train_begin(self, logs=None):
        self.fits += 1


@pytest.fixture(scope="module")
def moons():
    return load_dataset("two_moons", num_train=600, num_test=200)


def _early_stopping_state(stop):
    return {name: getattr(stop, name) for name in ("wait", "best", "best_epoch", "stopped_epoch")}


def _fit(x, backup_dir, *callbacks, epochs=4):
    """A fresh model (seeded: the same initial weights each time) fitted full-batch with a backup."""
    keras.utils.set_random_seed(0)
    model = FlowModel(2, num_couplings=2, hidden_units=(8,), standardize=False)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-2, epochs)),
                  jit_compile=False, steps_per_execution=1)
    backup = TrainingBackup(backup_dir)
    model.fit(x, epochs=epochs, batch_size=len(x), verbose=0, callbacks=[backup, *callbacks])
    return model, backup


def test_the_backup_restores_the_weights_the_optimizer_and_the_history(tmp_path, moons):
    x = moons.train[:512]
    seen, restored = {}, {}

    class Snapshot(InterruptAt):  # the state the backup must bring back, where the run stops
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == self.epoch:
                seen.update(weights=self.model.get_weights(), iterations=int(self.model.optimizer.iterations))
            super().on_epoch_begin(epoch, logs)

    class Probe(keras.callbacks.Callback):  # after the backup's on_train_begin: what it restored
        def on_train_begin(self, logs=None):
            restored.update(weights=self.model.get_weights(), iterations=int(self.model.optimizer.iterations))

    with pytest.raises(Interrupted):
        _fit(x, tmp_path / "backup", Snapshot(2))
    state = json.loads((tmp_path / "backup" / STATE_FILE).read_text())
    assert state["epoch"] == 2 and len(state["history"]["loss"]) == 2
    # A fresh process builds everything again: so does this.
    model, backup = _fit(x, tmp_path / "backup", Probe())
    assert backup.resumed_from == 2
    assert restored["iterations"] == seen["iterations"] == 2  # the cosine schedule goes on from step 2
    for got, want in zip(restored["weights"], seen["weights"]):
        np.testing.assert_array_equal(got, want)
    assert len(backup.history["loss"]) == 4  # two epochs before the interruption, two after
    assert not (tmp_path / "backup").exists()  # removed when fit completed
    # The uninterrupted run: the same history, the same weights.
    reference, reference_backup = _fit(x, tmp_path / "other")
    np.testing.assert_allclose(backup.history["loss"], reference_backup.history["loss"], rtol=RTOL)
    # atol for weights near 0 (biases; the output layer starts at zero), whose summation-order noise is
    # tiny but not relative to them; 1e-6 is far below one Adam step (lr 1e-2, cosine-decayed to 1.5e-3
    # at the 4th), so a step lost or taken twice still fails.
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-6)


def test_early_stopping_state_survives_the_interruption(tmp_path, moons):
    x = moons.train[:512]
    states = []

    class Record(keras.callbacks.Callback):
        def __init__(self, stop):
            super().__init__()
            self.stop = stop

        def on_train_begin(self, logs=None):
            states.append(("begin", _early_stopping_state(self.stop)))

        def on_epoch_begin(self, epoch, logs=None):
            states.append((epoch, _early_stopping_state(self.stop)))

    def fit(*extra):
        keras.utils.set_random_seed(0)
        model = FlowModel(2, num_couplings=1, hidden_units=(4,), standardize=False)
        model.compile(jit_compile=False, steps_per_execution=1)
        # min_delta 1 nat: no epoch after the first counts as progress, so the patience runs out at
        # epoch 3 (0-based); a resumed run whose early stopping started afresh would stop at 6.
        stop = keras.callbacks.EarlyStopping(monitor="loss", patience=3, min_delta=1.0, restore_best_weights=True)
        model.fit(x, epochs=12, batch_size=512, verbose=0,
                  callbacks=[stop, TrainingBackup(tmp_path / "b", early_stopping=stop), Record(stop), *extra])
        return stop

    with pytest.raises(Interrupted):
        fit(InterruptAt(3))
    before = dict(states)[3]  # early stopping as it was when the run stopped
    states.clear()
    resumed = fit()
    assert states[0] == ("begin", before)  # restored, not reset
    assert before["wait"] == 2
    states.clear()
    reference = fit()
    assert (resumed.stopped_epoch, resumed.best_epoch) == (reference.stopped_epoch, reference.best_epoch)
    assert resumed.stopped_epoch == 3


def test_a_write_cut_short_leaves_the_previous_backup(tmp_path, moons):
    # What a kill during a backup leaves: a temporary file, a truncated weights file that no
    # state.json names yet. The last committed backup must load regardless.
    x = moons.train[:512]
    model = FlowModel(2, num_couplings=1, hidden_units=(4,), standardize=False)
    model.compile(jit_compile=False, steps_per_execution=1)
    backup_dir = tmp_path / "backup"
    with pytest.raises(Interrupted):
        model.fit(x, epochs=4, batch_size=256, verbose=0, callbacks=[TrainingBackup(backup_dir), InterruptAt(2)])
    assert json.loads((backup_dir / STATE_FILE).read_text())["weights"] == "epoch-2.weights.h5"
    (backup_dir / "epoch-3.weights.h5").write_bytes(b"\x89HDF\r\n")  # the next backup, cut short
    (backup_dir / ".partial-99-state.json").write_text('{"epoch": 3')
    backup = TrainingBackup(backup_dir)
    model.fit(x, epochs=4, batch_size=256, verbose=0, callbacks=[backup])
    assert backup.resumed_from == 2 and len(backup.history["loss"]) == 4


def test_a_state_file_from_elsewhere_is_named(tmp_path, moons):
    (tmp_path / STATE_FILE).write_text('{"epoch": 3}')
    model = FlowModel(2, num_couplings=1, hidden_units=(4,), standardize=False)
    model.compile(jit_compile=False, steps_per_execution=1)
    with pytest.raises(ValueError, match=r"state\.json is not a training backup; expected the state\.json of"):
        model.fit(moons.train[:64], epochs=1, verbose=0, callbacks=[TrainingBackup(tmp_path)])


@pytest.mark.slow
def test_fit_flow_resumes_an_interrupted_run_of_restarts(tmp_path, moons):
    # Two restarts: the first finished, the second interrupted at the start of its 3rd epoch.
    # (Without restarts, tests/test_faults.py resumes a killed command line run.)
    config = TrainingConfig.for_dataset("two_moons", **FULL_BATCH, restarts=2)
    reference = fit_flow(config, data=moons, verbose=0)
    with pytest.raises(Interrupted):
        fit_flow(config, data=moons, verbose=0, backup_dir=tmp_path / "b", callbacks=[InterruptAt(2, fit=1)])
    counted = CountFits()
    resumed = fit_flow(config, data=moons, verbose=0, backup_dir=tmp_path / "b", callbacks=[counted])
    assert counted.fits == 1  # the finished restart is not trained again
    assert not (tmp_path / "b").exists()
    assert len(resumed.history["loss"]) == resumed.epochs_run == reference.epochs_run == 4
    np.testing.assert_allclose(resumed.history["loss"], reference.history["loss"], rtol=RTOL)
    for split in ("train", "validation", "test"):
        assert resumed.metrics[split]["nll"] == pytest.approx(reference.metrics[split]["nll"], rel=RTOL), split
    for got, want in zip(resumed.candidates, reference.candidates):
        assert got["train_nll"] == pytest.approx(want["train_nll"], rel=RTOL)

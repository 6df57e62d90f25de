"""TrainingBackup: Keras's `BackupAndRestore`, made whole for a run killed at any moment.

`keras.callbacks.BackupAndRestore` saves the weights at the end of every epoch (the optimizer's
too, so its iteration count, and with it the learning-rate schedule, comes back) and, at the
next `fit`, restores them and the epoch to go on from. A killed run then continues, but three
things do not come back with it, and `TrainingBackup` keeps them:

- **the history**: a resumed `fit` returns the epochs it ran, not those before the kill;
  `TrainingBackup.history` holds them all;
- **early stopping's state**: `keras.callbacks.EarlyStopping` resets its best loss, its
  patience count and its best weights at every `fit`, so a resumed run would stop later, and
  restore the best weights of the resumed epochs only; given the `EarlyStopping`, the backup
  restores its state (and a run that had already stopped stays stopped);
- **writes that cannot be half done**: Keras overwrites `latest.weights.h5` in place, then the
  epoch count, so a kill during the first write leaves a truncated file and a kill between the
  two pairs one epoch's weights with another's count. Here each backup is a new file,
  `epoch-<N>.weights.h5` (and `best-<M>.npz`, early stopping's best weights), written under a
  temporary name and renamed (`files.replace`); then `state.json`, which names them, replaces
  its predecessor the same way. That rename is the commit: a kill before it leaves the previous
  backup whole, a kill after it the new one. Files no longer named are removed afterwards.

In a multi-worker job (`tf.distribute.MultiWorkerMirroredStrategy`), Keras's multi-worker
contract holds: the chief's backup is the job's, every worker restores from it when the job is
restarted (so all go on from the same epoch with the same weights), and the other workers
write none (in Keras 2 they wrote to temporary directories and deleted them, because saving
was a collective operation; saving Keras 3 weights is not). The backup directory must
therefore be one that every worker reads, as a run directory on a shared file system is.

The backup is written at the end of each epoch (`save_freq="epoch"`, also with
`steps_per_execution > 1` and XLA, whose batch-level hooks run once per call), so a kill loses
at most the epoch in progress. The backup directory is removed when `fit` ends normally.

Example:

```python
stop = keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)
backup = TrainingBackup("run/backup", early_stopping=stop)
model.fit(x, epochs=50, callbacks=[stop, backup])  # killed? the same call continues the run
backup.history["loss"]                               # every epoch's, from the first
```
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import keras
import numpy as np

from tfp_realnvp import distribution, files

__all__ = [
    "STATE_FILE",
    "TrainingBackup",
]

STATE_FILE = "state.json"
"""The backup's commit record: the epochs done, the history, the files holding the weights."""

_EARLY_STOPPING_STATE = ("wait", "stopped_epoch", "best", "best_epoch")


class TrainingBackup(keras.callbacks.BackupAndRestore):
    """Backs up a `fit` at the end of every epoch and resumes it at the next `fit` call.

    Place it after the `EarlyStopping` it is given in the callback list: its `on_train_begin`
    must run after the one that resets early stopping, and its `on_epoch_end` after the one
    that updates it.

    Args:
      backup_dir: A directory for the backup and nothing else; created at the first backup and
        removed when `fit` completes.
      early_stopping: The run's `EarlyStopping`, whose state is backed up and restored too.
        Defaults to `None`.

    Attributes:
      history: Every epoch's logs, those before an interruption included, as lists of floats by
        name (`loss`, `val_loss`, ...), in epoch order.
      resumed_from: The number of epochs restored at the start of the last `fit` (0 for a
        fresh run).
    """

    def __init__(self, backup_dir: str | os.PathLike[str], *,
                 early_stopping: keras.callbacks.EarlyStopping | None = None) -> None:
        super().__init__(os.fspath(backup_dir), save_freq="epoch", delete_checkpoint=True)
        self.directory = pathlib.Path(backup_dir)
        self.early_stopping = early_stopping
        self.history: dict[str, list[float]] = {}
        self.resumed_from = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.history, self.resumed_from = {}, 0
        self._load_model()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._writes():  # the chief's backup is the job's: only it removes it
            super().on_train_end(logs)

    def _writes(self) -> bool:
        """Whether this process writes the backup: all but a multi-worker job's non-chief workers."""
        return distribution.is_chief(self.model.distribute_strategy)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        super().on_epoch_end(epoch, logs)  # BackupAndRestore: counts the epoch, then _save_model

    # -- reading and writing the backup --------------------------------------------------

    def _load_model(self) -> None:
        state = self._read_state()
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # its variables, to be loaded
        self.model.load_weights(self.directory / state["weights"])
        self.history = {name: list(values) for name, values in state["history"].items()}
        self.resumed_from = self._current_epoch = int(state["epoch"])
        # What BackupAndRestore sets: fit() goes on from this epoch.
        self.model._initial_epoch = self.params.get("epochs", self.resumed_from) if state["stopped"] \
            else self.resumed_from  # pylint: disable=protected-access
        stop = self.early_stopping
        if stop is not None and state.get("early_stopping") is not None:
            saved = state["early_stopping"]
            for name in _EARLY_STOPPING_STATE:
                setattr(stop, name, saved[name])
            if saved["best_weights"] is not None:
                with np.load(self.directory / saved["best_weights"]) as arrays:
                    stop.best_weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]

    def _read_state(self) -> dict[str, Any] | None:
        path = self.directory / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
        except ValueError as error:  # only a file not written by this class: ours are renamed whole
            raise ValueError(f"{path} is not a training backup ({error}); expected the state.json of "
                             "tfp_realnvp.backup.TrainingBackup") from None
        if not isinstance(state, dict) or not {"epoch", "weights", "history", "stopped"} <= set(state):
            raise ValueError(f"{path} is not a training backup; expected the state.json of "
                             "tfp_realnvp.backup.TrainingBackup")
        return state

    def _save_model(self) -> None:
        if not self._writes():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        epoch = self._current_epoch
        weights = f"epoch-{epoch}.weights.h5"
        files.replace(self.directory / weights, lambda path: self.model.save_weights(path, overwrite=True))
        state: dict[str, Any] = {"epoch": epoch, "weights": weights, "history": self.history,
                                 "stopped": bool(self.model.stop_training), "early_stopping": None}
        stop = self.early_stopping
        if stop is not None:
            saved: dict[str, Any] = {name: _number(getattr(stop, name)) for name in _EARLY_STOPPING_STATE}
            saved["best_weights"] = None
            if stop.best_weights is not None:
                saved["best_weights"] = f"best-{stop.best_epoch}.npz"
                path = self.directory / saved["best_weights"]
                if not path.exists():  # the same best epoch: the same weights, already saved
                    files.replace(path, lambda p: _save_arrays(p, stop.best_weights))
            state["early_stopping"] = saved
        # The commit: the previous state, or this one, whole.
        files.replace(self.directory / STATE_FILE, lambda path: path.write_text(json.dumps(state) + "\n"))
        keep = {STATE_FILE, weights, state["early_stopping"] and state["early_stopping"]["best_weights"]}
        for path in self.directory.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)


def _number(value: Any) -> Any:
    """A Python number for early stopping's counters and best loss (json writes inf as Infinity)."""
    return value.item() if hasattr(value, "item") else value


def _save_arrays(path: pathlib.Path, arrays: list[np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a name without it
        np.savez(f, *arrays)

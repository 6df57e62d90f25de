"""Keras callbacks: a progress bar that stays truthful, a notice while XLA compiles, and early
stopping that counts the starting point.

`FlowModel` runs 16 training steps per call by default (`steps_per_execution=16`), and Keras 3
reports each call as its last step index, whether or not the epoch had that many: an epoch of
15 batches shows `16/15` with a negative ETA, one of 40 batches `48/40`. `ProgressBar` is
Keras's `ProgbarLogger` with the step clipped to the epoch's length; `FlowModel.fit`,
`evaluate` and `predict` use it unless given a `ProgbarLogger` of their own.

`CompileNotice` prints a line when the first step of `fit` starts, if the step is compiled with
XLA (15-30 s of compilation on 2 CPU cores, during which Keras shows nothing), and how long the
first call took once it is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import keras

__all__ = [
    "CompileNotice",
    "EarlyStoppingFromStart",
    "ProgressBar",
    "with_progress_bar",
]


class ProgressBar(keras.callbacks.ProgbarLogger):
    """`keras.callbacks.ProgbarLogger` that never counts past the epoch's number of steps."""

    def _update_progbar(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.target is not None:
            batch = min(batch, self.target - 1)
        super()._update_progbar(batch, logs)


def with_progress_bar(callbacks: Any) -> Any:
    """`callbacks` with a `ProgressBar` at the end, unless it holds a `ProgbarLogger` already.

    A `keras.callbacks.CallbackList` (what `fit` hands to its own `evaluate`) is returned as is.
    """
    if isinstance(callbacks, keras.callbacks.CallbackList):
        return callbacks
    callbacks = list(callbacks or [])
    if not any(isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks):
        callbacks.append(ProgressBar())
    return callbacks


class CompileNotice(keras.callbacks.Callback):
    """Says that the first training step is being compiled (traced into TensorFlow's graph, and
    with XLA when `jit_compile` is on), and then how long it took: seconds of silence otherwise.

    Args:
      print_fn: Where the lines go. Defaults to `print` (flushed).
    """

    def __init__(self, print_fn: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self._print = print_fn or (lambda line: print(line, flush=True))
        self._started: float | None = None
        self._done = False

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._started is None and not self._done and not getattr(self.model, "run_eagerly", False):
            self._started = time.perf_counter()
            how = "with XLA" if getattr(self.model, "jit_compile", False) else "into TensorFlow's graph"
            self._print(f"Compiling the training step {how} (the first call only) ...")

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._started is not None and not self._done:
            steps = getattr(self.model, "steps_per_execution", 1) or 1
            if (self.params or {}).get("steps"):  # an epoch shorter than a call
                steps = min(steps, self.params["steps"])
            seconds = time.perf_counter() - self._started
            self._print(f"Compiled; the first call ({steps} step{'s' * (steps > 1)}) took {seconds:.1f} s.")
            self._done = True


class EarlyStoppingFromStart(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping(restore_best_weights=True)` with the weights before the first
    epoch as a candidate ("epoch 0").

    Keras's own takes the first epoch's weights as its first best, so a run whose every epoch is
    worse than where it started still ends on a trained model. Given the monitored value of the
    starting weights (measured before `fit`, e.g. the validation NLL of a fresh flow that *is*
    the data's Gaussian: `tfp_realnvp.bijectors.whitening`), this one starts from them: an epoch
    must beat the start to become the best, and if none does, training ends on the starting
    weights (`best_epoch` is then -1, Keras's count being 0-based). `tfp_realnvp.backup`'s
    `TrainingBackup` saves and restores its state like Keras's.

    Args:
      start: The monitored value of the weights `fit` starts from. Defaults to `None`: Keras's
        behaviour.
      **kwargs: Passed to `keras.callbacks.EarlyStopping`; `restore_best_weights` is always
        True.
    """

    def __init__(self, *, start: float | None = None, **kwargs: Any) -> None:
        super().__init__(restore_best_weights=True, **kwargs)
        self.start = start

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        if self.start is not None:
            self.best, self.best_epoch, self.best_weights = float(self.start), -1, self.model.get_weights()

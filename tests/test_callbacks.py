"""The progress bar stays truthful when several steps run per call; the XLA notice says what it waits for."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from tfp_realnvp import FlowModel
from tfp_realnvp.callbacks import CompileNotice, ProgressBar, with_progress_bar


def _fit_output(rows: int, batch_size: int, capsys, **compile_kwargs) -> str:
    model = FlowModel(2, num_couplings=1, hidden_units=(4,))
    model.compile(jit_compile=False, **compile_kwargs)  # the default 16 steps per call
    x = np.random.default_rng(0).standard_normal((rows, 2)).astype("float32")
    capsys.readouterr()
    model.fit(x, epochs=2, batch_size=batch_size, verbose=1)
    return capsys.readouterr().out


@pytest.mark.parametrize("rows, steps", [(15 * 8, 15), (40 * 8, 40)], ids=["15-steps", "40-steps"])
def test_the_progress_bar_never_counts_past_the_epoch(rows, steps, capsys):
    # The README's example showed `16/15` with a negative ETA: Keras reports each call of 16
    # steps as its last step index, whether or not the epoch had that many.
    out = _fit_output(rows, 8, capsys)
    counts = [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+)", out) if int(b) == steps]
    assert counts, out
    assert all(done <= total for done, total in counts), counts
    assert (steps, steps) in counts
    assert "ETA: -" not in out and not re.search(r"\b-\d+s\b", out), out


def test_a_progbar_of_the_users_own_is_kept():
    own = keras.callbacks.ProgbarLogger()
    assert with_progress_bar([own]) == [own]
    added = with_progress_bar(None)
    assert len(added) == 1 and isinstance(added[0], ProgressBar)
    listed = keras.callbacks.CallbackList([])
    assert with_progress_bar(listed) is listed  # fit's own evaluate passes its CallbackList through


def test_the_compile_notice_speaks_once_per_fit_and_not_when_eager():
    lines: list[str] = []
    x = np.random.default_rng(0).standard_normal((64, 2)).astype("float32")
    for options in (dict(jit_compile=True), dict(jit_compile=False), dict(run_eagerly=True)):
        model = FlowModel(2, num_couplings=1, hidden_units=(4,))
        model.compile(steps_per_execution=2, **options)
        model.fit(x, epochs=2, batch_size=16, verbose=0, callbacks=[CompileNotice(lines.append)])
    assert lines[0] == "Compiling the training step with XLA (the first call only) ..."
    assert lines[2] == "Compiling the training step into TensorFlow's graph (the first call only) ..."
    for line in lines[1], lines[3]:
        assert re.fullmatch(r"Compiled; the first call \(2 steps\) took \d+\.\d s\.", line), lines
    assert len(lines) == 4, lines  # not again in epoch 2, nor when nothing compiles

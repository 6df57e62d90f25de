"""Speed of the spline flow: training against zuko's NSF, eager calls against tf.function + XLA.

```none
python benchmarks/spline_speed.py      # S and L, writes benchmarks/SPLINE_SPEED.md (~5 minutes)
```

The sizes are benchmarks/speed.py's (`CONFIGS`: S = event 2, 2x128, batch 512; L = event 64,
2x256, batch 256; 8 couplings), and so are the helpers (`fit_contender`, `interleave`, ...):

- ours: `FlowModel(D, num_couplings=8, hidden_units=..., transform="spline", num_bins=8)` with
  `compile()`'s defaults, trained by `fit` (samples/s per epoch);
- zuko: `zuko.flows.NSF(D, transforms=8, hidden_features=..., bins=8, passes=2)`, zuko's
  rational-quadratic spline flow as couplings (PyTorch, CPU), trained with `torch.optim.Adam`;
- our eager `log_prob(x)` and `sample(4096)` against the same model's `tf.function(...,
  jit_compile=True)`.

Best of interleaved rounds; ratios within one run.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import speed  # noqa: E402  -- this directory's benchmark helpers

TRAIN_VS_ZUKO = 1.5
EAGER_VS_JIT = speed.EAGER_VS_JIT
ROUNDS, TRAIN_BATCHES, EVAL_MIN_S = 3, 32, 0.5


class ZukoNSF(speed.Zuko):
    """zuko's spline flow with coupling (two-pass) masks, the same sizes as ours."""

    def __init__(self, config: speed.Config) -> None:
        import torch
        import zuko

        torch.manual_seed(0)
        self.torch = torch
        self.flow = zuko.flows.NSF(config.event_size, transforms=config.num_couplings,
                                   hidden_features=list(config.hidden_units), bins=8, passes=2)
        self.optimizer = torch.optim.Adam(self.flow.parameters(), lr=1e-3)


def ours(config: speed.Config):
    import keras

    from tfp_realnvp import FlowModel

    model = FlowModel(config.event_size, num_couplings=config.num_couplings, hidden_units=config.hidden_units,
                      transform="spline", num_bins=8, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def measure(config: speed.Config) -> dict[str, float]:
    x_train = speed.data(config, config.batch_size * TRAIN_BATCHES)
    x_eval = tf.constant(speed.data(config, speed.EVAL_BATCH, seed=1))
    seed = tf.constant([7, 0], tf.int32)
    model = ours(config)
    train = {"ours": speed.fit_contender(model, x_train, config.batch_size)[0],
             "zuko": speed.zuko_train_contender(ZukoNSF(config), x_train, config.batch_size)[0]}
    rates = speed.interleave(train, ROUNDS)
    lp_jit = tf.function(model.log_prob, jit_compile=True)
    sm_jit = tf.function(lambda s: model.sample(speed.EVAL_BATCH, seed=s), jit_compile=True)
    calls = {
        "lp_eager": speed.call_contender(lambda: model.log_prob(x_eval), speed.EVAL_BATCH, EVAL_MIN_S),
        "lp_jit": speed.call_contender(lambda: lp_jit(x_eval), speed.EVAL_BATCH, EVAL_MIN_S),
        "sm_eager": speed.call_contender(lambda: model.sample(speed.EVAL_BATCH, seed=seed), speed.EVAL_BATCH,
                                         EVAL_MIN_S),
        "sm_jit": speed.call_contender(lambda: sm_jit(seed), speed.EVAL_BATCH, EVAL_MIN_S),
    }
    return {**rates, **speed.interleave(calls, ROUNDS)}


def main() -> int:
    started = datetime.datetime.now(datetime.timezone.utc)
    load = os.getloadavg()[0]
    results = {name: measure(speed.CONFIGS[name]) for name in ("S", "L")}
    lines = [
        "# Spline flow speed",
        "",
        f"Measured by `benchmarks/spline_speed.py` on {started:%Y-%m-%d %H:%M} UTC, 2 CPU cores shared with other "
        f"jobs (load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at the end): samples/s are only good "
        "as ratios within this run.",
        "",
        "| size | training, ours (samples/s) | training, zuko NSF | ours / zuko | eager log_prob / tf.function+XLA "
        "| eager sample / tf.function+XLA |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['ours']:,.0f} | {r['zuko']:,.0f} | {r['ours'] / r['zuko']:.2f}x | "
                     f"{r['lp_eager'] / r['lp_jit']:.0%} | {r['sm_eager'] / r['sm_jit']:.0%} |")
    worst_train = min(r["ours"] / r["zuko"] for r in results.values())
    worst_eager = min(min(r["lp_eager"] / r["lp_jit"], r["sm_eager"] / r["sm_jit"]) for r in results.values())
    lines += ["", f"Training against zuko: worst {worst_train:.2f}x (target >= {TRAIN_VS_ZUKO}x: "
              f"{'met' if worst_train >= TRAIN_VS_ZUKO else 'missed'}). Eager calls: worst {worst_eager:.0%} of "
              f"tf.function+XLA (target >= {EAGER_VS_JIT:.0%}: {'met' if worst_eager >= EAGER_VS_JIT else 'missed'})."]
    (HERE / "SPLINE_SPEED.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    np.random.seed(0)
    sys.exit(main())

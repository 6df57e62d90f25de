"""NeuTra HMC against plain HMC on Neal's 10-D funnel (issue 17): ESS per gradient evaluation.

The target, Neal's funnel [1] in D = 10 dimensions (the coordinate `v` and nine `x_i`):

```none
v ~ N(0, 3^2),   x_i | v ~ N(0, exp(v / 2)^2),  i = 1..9
log p(v, x) = log N(v; 0, 3^2) + sum_i log N(x_i; 0, exp(v))
```

is normalised, with E[v] = 0 and sd(v) = 3. Its scale in `x` changes by a factor of about
e^4.5 ~ 90 between the neck (v ~ -9) and the mouth (v ~ +9), so no single HMC step size fits.

NeuTra [2] fits a flow `q = f_# N(0, I)` by variational inference (`tfp.vi.fit_surrogate_posterior`,
reverse KL) and runs HMC on `z`, where the target becomes

```none
log p_z(z) = log p(f(z)) + log|det df/dz|
```

(`tfp.mcmc.TransformedTransitionKernel` with the flow's bijector `f`); if `q ~ p`, `p_z ~ N(0, I)`.
The chain is exact whatever the flow (it is a change of variables), and the flow decides only its
efficiency.

Both samplers run HMC with the same number of leapfrog steps per iteration (8) and the same
iterations and chains, so they spend the same number of gradient evaluations; each adapts one
step size shared by its chains with `tfp.mcmc.DualAveragingStepSizeAdaptation` (TFP's default
target acceptance 0.75) over the first 80% of the warm-up. Gradient evaluations are counted, not
computed from the settings: the target log-density increments a counter by the number of points
it is given (one per chain in HMC, one per Monte Carlo sample in VI), and every call is followed
by its gradient. The VI fit's evaluations are reported separately, and in the last column added
to NeuTra's. The ESS is `tfp.mcmc.effective_sample_size(..., cross_chain_dims=1)`, over all
chains, of `v` and the minimum over the ten coordinates.

    python benchmarks/neutra_funnel.py [--seeds 0 1 2 3 4] [--chains 16] [--warmup 1000]
        [--samples 10000] [--leapfrog-steps 8] [--vi-steps 4000]

Prints one line per sampler and seed and writes benchmarks/NEUTRA.md. Not a test: it takes about
three minutes on 2 cores.

References:
  [1] Radford M. Neal. Slice sampling. Annals of Statistics 31(3), 2003.
  [2] Matthew D. Hoffman, Pavel Sountsov, Joshua V. Dillon, Ian Langmore, Dustin Tran, Srinivas
      Vasudevan. NeuTra-lizing bad geometry in Hamiltonian Monte Carlo using neural transport.
      2019. https://arxiv.org/abs/1903.03704
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import pathlib
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tfp_realnvp

tfb, tfd = tfp.bijectors, tfp.distributions

EVENT_SIZE = 10  # v and nine x_i, as in Neal (2003)
V_SCALE = 3.0
# The flow and its VI fit: 6 couplings of 2x64 units, Adam at 1e-3, 64 samples per step. With
# seed 0, 2 000 steps left a KL of about 0.26 nats (the mean loss of the last 100 steps); 4 000
# steps leave 0.12-0.18 (NEUTRA.md).
FLOW = dict(num_couplings=6, hidden_units=(64, 64))
LEARNING_RATE = 1e-3
VI_SAMPLE_SIZE = 64
NECK = -6.0  # v below it: x_i's scale under exp(-3) ~ 0.05
NECK_PROBABILITY = 0.5 * math.erfc(-NECK / V_SCALE / math.sqrt(2.0))  # P(v < -6) = Phi(-2) = 2.28%
RHAT_MIXED = 1.01  # Vehtari et al. (2021)'s threshold for chains that agree


class CountedFunnel:
    """Neal's funnel log-density that counts the points it is evaluated at.

    Each call adds the number of points (the batch size) to `evaluations`; every caller here
    (HMC's leapfrog steps, the VI loss) differentiates each call once, so the count is the number
    of gradient evaluations at one point.
    """

    def __init__(self) -> None:
        self.evaluations = tf.Variable(0, dtype=tf.int64, trainable=False)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        self.evaluations.assign_add(tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.int64))
        v = x[..., 0]
        x_scale = tf.exp(v / 2.0)[..., tf.newaxis]
        return tfd.Normal(0.0, V_SCALE).log_prob(v) + tf.reduce_sum(
            tfd.Normal(0.0, x_scale).log_prob(x[..., 1:]), axis=-1)


def fit_flow(target: CountedFunnel, seed: int, num_steps: int) -> tuple[tfd.Distribution, dict]:
    """Fits `real_nvp` to the funnel by `fit_surrogate_posterior`; returns it and the fit's figures."""
    flow = tfp_realnvp.real_nvp(EVENT_SIZE, seed=seed, **FLOW)
    target.evaluations.assign(0)
    start = time.perf_counter()
    tfp.vi.fit_surrogate_posterior(
        target, flow, tf.keras.optimizers.Adam(LEARNING_RATE), num_steps=num_steps,
        sample_size=VI_SAMPLE_SIZE, seed=(seed, 1), jit_compile=True)
    seconds = time.perf_counter() - start
    counted = int(target.evaluations.numpy())
    if counted != num_steps * VI_SAMPLE_SIZE:
        raise RuntimeError(f"counted {counted} gradient evaluations in VI; expected {num_steps * VI_SAMPLE_SIZE}")
    # The funnel is normalised, so -ELBO is KL(q || p); 20 000 draws put its MC error near 0.01.
    x = flow.sample(20_000, seed=(seed, 2))
    kl = -float(tf.reduce_mean(target(x) - flow.log_prob(x)))
    return flow, dict(evaluations=counted, seconds=seconds, kl=kl)


def run_hmc(target: CountedFunnel, bijector: tfb.Bijector | None, args: argparse.Namespace,
            seed: int) -> dict:
    """Runs HMC (NeuTra when `bijector` is given) and returns its figures.

    The chain function runs twice with the same inputs: the first call compiles (XLA), the second
    is timed and counted.
    """
    hmc = tfp.mcmc.HamiltonianMonteCarlo(target, step_size=0.1, num_leapfrog_steps=args.leapfrog_steps)
    inner = hmc if bijector is None else tfp.mcmc.TransformedTransitionKernel(hmc, bijector)
    kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(inner, num_adaptation_steps=int(0.8 * args.warmup))

    def trace_fn(_, results):
        hmc_results = results.inner_results if bijector is None else results.inner_results.inner_results
        return hmc_results.is_accepted, results.new_step_size

    @tf.function(jit_compile=True)
    def chain(initial_state, seed):
        return tfp.mcmc.sample_chain(
            args.samples, initial_state, kernel=kernel, num_burnin_steps=args.warmup, trace_fn=trace_fn,
            seed=seed)

    # Plain HMC starts from N(0, I) in (v, x); NeuTra from N(0, I) in z, that is from q.
    initial_state = tf.random.stateless_normal([args.chains, EVENT_SIZE], seed=(seed, 3))
    if bijector is not None:
        initial_state = bijector.forward(initial_state)
    chain(initial_state, (seed, 4))
    target.evaluations.assign(0)
    start = time.perf_counter()
    samples, (accepted, step_size) = chain(initial_state, (seed, 4))
    samples = samples.numpy()
    seconds = time.perf_counter() - start
    total = int(target.evaluations.numpy())
    # sample_chain evaluates the target once at the initial state, then leapfrog_steps times per
    # iteration per chain.
    per_iteration = args.chains * args.leapfrog_steps
    sampling = args.samples * per_iteration
    expected = args.chains + (args.warmup + args.samples) * per_iteration
    if total != expected:
        raise RuntimeError(f"counted {total} gradient evaluations; expected {expected} from the settings")
    ess = tfp.mcmc.effective_sample_size(samples, cross_chain_dims=1).numpy()
    return dict(
        step_size=float(step_size[-1]), acceptance=float(np.mean(accepted)), evaluations=sampling, total=total,
        ess_v=float(ess[0]), ess_min=float(ess.min()),
        mean_v=float(samples[..., 0].mean()), sd_v=float(samples[..., 0].std()),
        neck=float(np.mean(samples[..., 0] < NECK)),
        rhat=float(tfp.mcmc.potential_scale_reduction(samples).numpy().max()), seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--leapfrog-steps", type=int, default=8)
    parser.add_argument("--vi-steps", type=int, default=4000)
    args = parser.parse_args()
    tf.get_logger().setLevel("ERROR")  # one chain function per sampler and seed: TF warns of retracing
    target = CountedFunnel()
    rows, ratios = [], []
    for seed in args.seeds:
        flow, vi = fit_flow(target, seed, args.vi_steps)
        print(f"seed {seed}: VI fit {vi['evaluations']} gradient evaluations in {vi['seconds']:.1f} s, "
              f"KL(q || p) {vi['kl']:.3f}", flush=True)
        plain = run_hmc(target, None, args, seed)
        neutra = run_hmc(target, flow.bijector, args, seed)
        for name, r in (("HMC", plain), ("NeuTra HMC", neutra)):
            print(f"seed {seed}: {name}: ESS of v {r['ess_v']:.0f}, min {r['ess_min']:.0f}, per gradient evaluation "
                  f"{r['ess_v'] / r['evaluations']:.2e}; sd(v) {r['sd_v']:.2f}, max R-hat {r['rhat']:.3f}, "
                  f"{r['seconds']:.1f} s", flush=True)
        rows.append((seed, vi, plain, neutra))
        ratios.append((neutra["ess_v"] / plain["ess_v"], neutra["ess_min"] / plain["ess_min"],
                       (neutra["ess_v"] / neutra["seconds"]) / (plain["ess_v"] / plain["seconds"])))

    def row(seed: int, name: str, r: dict, vi: dict | None) -> str:
        all_evaluations = r["total"] + (vi["evaluations"] if vi else 0)
        return (f"| {seed} | {name} | {r['step_size']:.3f} | {r['acceptance']:.2f} | {r['evaluations']:,} "
                f"| {r['ess_v']:.0f} | {r['ess_min']:.0f} | {r['ess_v'] / r['evaluations']:.2e} "
                f"| {r['ess_min'] / r['evaluations']:.2e} | {r['mean_v']:+.2f} | {r['sd_v']:.2f} | {100 * r['neck']:.2f}% "
                f"| {r['rhat']:.3f} | {r['seconds']:.2f} | {r['ess_v'] / all_evaluations:.2e} |")

    command = (f"python benchmarks/neutra_funnel.py --seeds {' '.join(map(str, args.seeds))} --chains {args.chains} "
               f"--warmup {args.warmup} --samples {args.samples} --leapfrog-steps {args.leapfrog_steps} "
               f"--vi-steps {args.vi_steps}")
    ratios = np.array(ratios)  # [seeds, (v, least-sampled coordinate, v per second)]
    lines = [
        "# NeuTra HMC on Neal's funnel (issue 17)",
        "",
        f"Run {datetime.date.today()} on {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"TensorFlow {tf.__version__}, TensorFlow Probability {tfp.__version__}. Command: `{command}`.",
        "",
        f"Target: Neal's funnel in {EVENT_SIZE} dimensions, v ~ N(0, 3^2), x_i | v ~ N(0, exp(v)), i = 1..9 "
        "(E[v] = 0, sd(v) = 3). "
        f"Both samplers: HMC with {args.leapfrog_steps} leapfrog steps, {args.chains} chains, {args.warmup} warm-up "
        f"iterations (dual-averaging step size over the first {int(0.8 * args.warmup)}, target acceptance 0.75) "
        f"then {args.samples} kept, float32, XLA. NeuTra runs HMC in the latent space of "
        f"`real_nvp({EVENT_SIZE}, num_couplings={FLOW['num_couplings']}, hidden_units={FLOW['hidden_units']})` "
        f"through `tfp.mcmc.TransformedTransitionKernel`, the flow fitted by `tfp.vi.fit_surrogate_posterior` "
        f"({args.vi_steps} steps of {VI_SAMPLE_SIZE} samples, Adam at {LEARNING_RATE}, same seed).",
        "",
        "| seed | sampler | step size | acceptance | gradient evaluations (kept iterations) | ESS of v "
        "| min ESS, 10 coordinates | ESS of v per gradient evaluation | min ESS per gradient evaluation "
        f"| mean of v (0) | sd of v (3) | draws with v < {NECK:.0f} ({100 * NECK_PROBABILITY:.2f}%) | max R-hat "
        "| sampling time (s) | ESS of v per gradient evaluation, all counted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[line for seed, vi, plain, neutra in rows
          for line in (row(seed, "HMC", plain, None), row(seed, "NeuTra HMC", neutra, vi))],
        "",
        f"NeuTra / HMC, ESS per gradient evaluation, median of {len(ratios)} seeds: {np.median(ratios[:, 0]):.0f}x "
        f"for v ({_ratios(ratios[:, 0])}), {np.median(ratios[:, 1]):.0f}x for the least-sampled coordinate "
        f"({_ratios(ratios[:, 1])}); per second of sampling, {np.median(ratios[:, 2]):.0f}x for v "
        f"({_ratios(ratios[:, 2])}).",
        "",
        "VI fits: " + "; ".join(
            f"seed {seed}: {vi['evaluations']:,} gradient evaluations in {vi['seconds']:.0f} s, "
            f"KL(q || p) {vi['kl']:.3f}" for seed, vi, _, _ in rows) + ".",
        "",
        "*ESS* is `tfp.mcmc.effective_sample_size(draws, cross_chain_dims=1)`, over all chains, and *R-hat* "
        "`tfp.mcmc.potential_scale_reduction`, the largest over the ten coordinates. "
        "*gradient evaluations* counts the evaluations of the target and its gradient at one point, in the kept "
        "iterations of all chains (the ESS is of those draws). *all counted* divides by everything spent: "
        "warm-up, the one evaluation at each initial state and, for NeuTra, the VI fit. Each NeuTra gradient also "
        "runs the flow forward and back, which *sampling time* (warm-up and kept iterations, after XLA "
        "compilation) shows.",
        "",
        *_mixing_notes(rows),
        *_capped_notes(rows, args),
    ]
    out = pathlib.Path(__file__).with_name("NEUTRA.md")
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


def _ratios(values: np.ndarray) -> str:
    return " / ".join(f"{r:.0f}x" for r in values)


def _capped_notes(rows: list, args: argparse.Namespace) -> list[str]:
    """Notes the ESS estimates that equal the number of draws."""
    draws = args.chains * args.samples
    capped = [f"seed {row[0]} {name}" for row in rows for name, index in (("HMC", 2), ("NeuTra HMC", 3))
              if round(row[index]["ess_v"]) == draws]
    if not capped:
        return []
    return [f"An ESS of {draws:,}, all the draws ({', '.join(capped)}), means a negative lag-1 autocorrelation: "
            "TFP's default estimate (`filter_threshold=0`) sums the autocorrelations up to the first negative one, "
            "so it reports at most the number of draws, where Geyer's paired sums "
            "(`filter_beyond_positive_pairs=True`) can report more.", ""]


def _mixing_notes(rows: list) -> list[str]:
    """What the R-hat and sd(v) columns say about each sampler, from the figures themselves."""
    notes = []
    for name, index in (("HMC", 2), ("NeuTra HMC", 3)):
        unmixed = [row for row in rows if row[index]["rhat"] > RHAT_MIXED]
        if unmixed:
            sds = " / ".join(f"{row[index]['sd_v']:.2f}" for row in unmixed)
            notes.append(
                f"{name}: max R-hat above {RHAT_MIXED} for seed(s) {', '.join(str(row[0]) for row in unmixed)} "
                f"(sd of v {sds} against 3): those chains have not mixed, and an ESS computed from them "
                "overstates what they are worth.")
    return notes + [""] if notes else []


if __name__ == "__main__":
    main()

"""Simulations behind the variance decomposition's caveats in docs/evaluation.md.

1. Seeds crossed with partitions (the same seed in every fold): scores
   ``y = a_p + b_k + e_pk`` read by the nested estimator, whose partition variance then
   lacks about ``var(b) / K``.
2. Coverage of the percentile bootstrap intervals under the nested model itself.
3. The partition variance set to 0 where negative: its upward bias by design (partition
   variance 0.01, seed variance 0.02, 20,000 draws each).

Run: ``python docs/scripts/vd_simulation.py`` (about a second; seeded, so the numbers
are those the docs quote).
"""

from __future__ import annotations

import numpy as np

from xmsgl.evaluate import _anova

SIGMA2_PARTITION, SIGMA2_SEED_SHARED, SIGMA2_SEED = 0.01, 0.02, 0.005


def crossed(rng: np.random.Generator, p: int = 6, k: int = 3, draws: int = 4000) -> None:
    est = []
    for _ in range(draws):
        y = (rng.normal(0, np.sqrt(SIGMA2_PARTITION), (p, 1))
             + rng.normal(0, np.sqrt(SIGMA2_SEED_SHARED), (1, k))
             + rng.normal(0, np.sqrt(SIGMA2_SEED), (p, k)))
        est.append(_anova(y)[1])
    s2p = np.asarray(est)
    print(f"crossed seeds, {p} partitions x {k} seeds: partition variance {s2p.mean():.4f} on average "
          f"(true {SIGMA2_PARTITION}), 0 in {np.mean(s2p == 0):.0%} of {draws} draws")


def coverage(rng: np.random.Generator, p: int, k: int, draws: int = 400, n_boot: int = 400) -> None:
    hits = {"mean": 0, "partition": 0, "seed": 0}
    for _ in range(draws):
        y = 5 + rng.normal(0, np.sqrt(SIGMA2_PARTITION), (p, 1)) + rng.normal(0, np.sqrt(SIGMA2_SEED), (p, k))
        boot = _anova(y[rng.integers(0, p, size=(n_boot, p))])
        for name, i, true in (("mean", 0, 5.0), ("partition", 1, SIGMA2_PARTITION), ("seed", 2, SIGMA2_SEED)):
            lo, hi = np.nanquantile(boot[i], [0.025, 0.975])
            hits[name] += int(lo <= true <= hi)
    print(f"nested, {p} partitions x {k} seeds: nominal 95% intervals cover "
          + ", ".join(f"the {n} in {v / draws:.0%}" for n, v in hits.items()))


def clipping(rng: np.random.Generator, draws: int = 20000) -> None:
    for p, k in ((4, 2), (6, 3), (10, 2), (30, 3)):
        y = (1.0 + rng.normal(0, np.sqrt(SIGMA2_PARTITION), (draws, p, 1))
             + rng.normal(0, np.sqrt(0.02), (draws, p, k)))
        _, s2p, _, _, msb, msw = _anova(y)
        raw = (msb - msw) / k
        print(f"{p} partitions x {k} seeds: clipped partition variance {s2p.mean():.4f} on average "
              f"(true {SIGMA2_PARTITION}), unclipped {raw.mean():.4f}, set to 0 in "
              f"{np.mean(raw < 0):.0%} of {draws} draws")


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    crossed(rng)
    for p, k in ((6, 2), (10, 2), (30, 3)):
        coverage(rng, p, k)
    clipping(np.random.default_rng(0))

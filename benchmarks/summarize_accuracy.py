"""Pool the fits of several ``bench_accuracy.py`` runs and compare them seed by seed.

``bench_accuracy.py`` prints one JSON line per fit; runs of different seeds are
often made in separate processes (one seed each, side by side on the cores). This
script reads the output of any number of such runs, groups the fits by setting
(basin, test years, epochs, stride, weighting, options, share kept: everything on
the line but the method, the seed, the scores and the date), and for each setting
prints one JSON line per multi-scale method (msgl, async-msgl) against the best
single-scale baseline (fine-only or remap, whichever has the lower mean over the
seeds both were fitted on):

* the seeds and each seed's RMSE for the method and the baseline;
* ``gain_of_means``: ``1 - mean(method) / mean(baseline)``, the figure
  ``bench_accuracy.py`` prints in its summary line;
* ``gain_by_seed``: ``1 - method / baseline`` for each seed, the two fits of a seed
  sharing the same sparsified observations, and their mean, standard deviation
  (``ddof=1``) and a two-sided 95% Student-t interval for the mean. The interval
  treats the seeds as independent draws; it says how far the mean gain could move
  with other seeds, not how good one fit is;
* ``goal_gain`` (0.20) and whether the gain of means and the interval's lower bound
  reach it.

ASYNC-MSGL fits with different stage-A tasks (``stage_a_tasks`` on their lines) are
compared as separate methods, each line saying its tasks. A line without them was
printed before they were recorded on every ASYNC-MSGL line and fitted with fit's
default of then, ``["coarse", "remap"]``; runs of that time given
``--stage-a-tasks`` carry them on the line.

Fits are deterministic per seed, so a fit that appears in two files must carry the
same RMSE; the script stops with an error otherwise.

Run::

    python benchmarks/summarize_accuracy.py run_seed0.log run_seed1.log run_seed2.log
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from typing import Any

GOAL_GAIN = 0.20
SINGLE = ("fine-only", "remap")
# Fields of a fit's line that are not part of its setting.
_NOT_SETTING = {"what", "method", "seed", "rmse", "mae", "fit_seconds", "downscale_seconds",
                "date", "best_epoch",
                "val_by_epoch", "task_weights_last_epoch", "rmse_observed_reaches",
                "rmse_unobserved_reaches", "observed_reaches", "rmse_cross_scale_estimate",
                # Where a fit ran: a fit is deterministic per seed whatever the CPU and
                # threads, and runs of several commits are pooled when their seeds do
                # not conflict; the summary lists the commits it pooled.
                "commit", "cpu", "torch", "threads",
                # A property of the ASYNC-MSGL fit, not of the setting its baselines share.
                "stage_a_tasks"}
#: ASYNC-MSGL's stage-A tasks on lines that do not record them: fit's default until
#: 2026-11-29, when the fine task ("remap-fine") joined it.
_STAGE_A_UNRECORDED = ["coarse", "remap"]


def read_fits(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The ``test_rmse_all_reaches`` records among ``lines`` (other lines are skipped)."""
    fits = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("what") == "test_rmse_all_reaches":
            fits.append(rec)
    return fits


def setting_key(rec: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in rec.items() if k not in _NOT_SETTING}, sort_keys=True)


def stage_a_tasks(rec: dict[str, Any]) -> list[str] | None:
    """The stage-A tasks of an ASYNC-MSGL fit's line; None for the other methods."""
    if rec["method"] != "async-msgl":
        return None
    return list(rec.get("stage_a_tasks") or _STAGE_A_UNRECORDED)


MethodKey = tuple[str, tuple[str, ...] | None]


def method_key(rec: dict[str, Any]) -> MethodKey:
    """The method a fit is compared as: ASYNC-MSGL with its stage-A tasks apart."""
    tasks = stage_a_tasks(rec)
    return rec["method"], None if tasks is None else tuple(tasks)


def method_label(key: MethodKey) -> str:
    method, tasks = key
    return method if tasks is None else f"{method}[{','.join(tasks)}]"


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def compare(fits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (setting, multi-scale method) present with a single-scale baseline."""
    by_setting: dict[str, dict[MethodKey, dict[int, float]]] = {}
    commits: dict[str, set[str]] = {}
    for rec in fits:
        commits.setdefault(setting_key(rec), set()).add(str(rec.get("commit", "unrecorded")))
        name = method_key(rec)
        scores = by_setting.setdefault(setting_key(rec), {}).setdefault(name, {})
        seed = int(rec["seed"])
        if seed in scores and scores[seed] != rec["rmse"]:
            raise SystemExit(f"error: method {method_label(name)!r}, seed {seed} appears twice with "
                             f"different RMSE ({scores[seed]} and {rec['rmse']}) in the same "
                             "setting; fits are deterministic per seed, so these files come "
                             "from different code or data: pass only runs of one version")
        scores[seed] = rec["rmse"]
    out = []
    for key, methods in by_setting.items():
        setting = json.loads(key)
        singles = {k[0]: v for k, v in methods.items() if k[0] in SINGLE}
        for multi in sorted((k for k in methods if k[0] in ("msgl", "async-msgl")), key=method_label):
            present = [b for b in SINGLE if set(methods[multi]) & set(singles.get(b, {}))]
            if not present:
                continue
            # The best baseline is judged on the seeds every baseline present shares
            # with the multi-scale method: means over different seeds (fine-only over
            # seeds 0-2, remap over seed 0) would compare seeds as much as methods.
            shared = set(methods[multi]).intersection(*(singles[b] for b in present))
            chosen_on = sorted(shared) if shared else None
            candidates = []
            for single in present:
                seeds = sorted(set(methods[multi]) & set(singles[single]))
                judge = chosen_on or seeds
                mean = sum(singles[single][s] for s in judge) / len(judge)
                candidates.append((mean, single, seeds))
            _, base, seeds = min(candidates)
            a = [methods[multi][s] for s in seeds]
            b = [singles[base][s] for s in seeds]
            gains = [1 - x / y for x, y in zip(a, b, strict=True)]
            n = len(gains)
            mean_gain = sum(gains) / n
            method, tasks = multi
            line: dict[str, Any] = {
                "what": "paired_gain", "method": method,
                **({"stage_a_tasks": list(tasks)} if tasks is not None else {}),
                "baseline": base, "seeds": seeds,
                f"rmse_{method}": a, f"rmse_{base}": b,
                "gain_of_means": round(1 - (sum(a) / n) / (sum(b) / n), 4),
                "gain_by_seed": [round(g, 4) for g in gains],
                "gain_by_seed_mean": round(mean_gain, 4),
            }
            if n > 1:
                sd = math.sqrt(sum((g - mean_gain) ** 2 for g in gains) / (n - 1))
                half = t_quantile_975(n - 1) * sd / math.sqrt(n)
                line["gain_by_seed_sd"] = round(sd, 4)
                line["gain_by_seed_ci95"] = [round(mean_gain - half, 4), round(mean_gain + half, 4)]
            line["baseline_chosen_on_seeds"] = chosen_on if chosen_on is not None else (
                "each baseline's own seeds (no seed shared by all)")
            line["goal_gain"] = GOAL_GAIN
            # Judged on the unrounded values: a gain of 0.19996 is below the goal.
            line["gain_of_means_reaches_goal"] = 1 - (sum(a) / n) / (sum(b) / n) >= GOAL_GAIN
            if n > 1:
                line["ci95_lower_reaches_goal"] = mean_gain - half >= GOAL_GAIN
            line["commits"] = sorted(commits[key])
            line["setting"] = setting
            out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="output of bench_accuracy.py runs ('-' for stdin)")
    args = ap.parse_args(argv)
    fits = []
    for name in args.files:
        if name == "-":
            fits += read_fits(sys.stdin)
        else:
            with open(name, encoding="utf-8") as f:
                fits += read_fits(f)
    if not fits:
        print("error: no 'test_rmse_all_reaches' line in the files given", file=sys.stderr)
        return 1
    lines = compare(fits)
    if not lines:
        print("error: no setting has both a multi-scale method (msgl, async-msgl) and a "
              "single-scale baseline (fine-only, remap) fitted on the same seed", file=sys.stderr)
        return 1
    for line in lines:
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

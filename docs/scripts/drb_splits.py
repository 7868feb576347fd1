"""Pool ``drb_first_run.py`` reports of several splits into one table of fine-scale RMSE.

Each run of ``drb_first_run.py --seed S --method M --out F`` writes ``F`` and a JSON
of its numbers next to it (``F`` with the suffix ``.json``). A seed is a split: it
draws the held-out segments and the initial weights. This script reads any number
of those JSON files and prints, as a markdown table, the fine-scale RMSE (degC,
against the observations at reaches) of each method on each split and held-out
group, the air-temperature regression of each split, the mean and the population
standard deviation over the splits, how far each multi-scale method's mean lies
below the better single-scale mean (fine-only or remap) of each group, and the same
gain split by split (paired: the mean of the splits' gains, a 95% Student-t interval
for it, and the number of splits on which the method is better)::

    python docs/scripts/drb_splits.py runs/*.json

ASYNC-MSGL runs of different stage-A tasks are kept apart (their tasks are named
in the column). Reports written before the JSON named stage A carry none; give
``--stage-a-tasks`` to say what they used, or they form a column of their own.
The script stops if two files give one method and split, or if a split's files
disagree on its held-out segments (the runs then did not share a split).

Reports that give the held-out sites segment by segment (``held_out_by_segment``,
written by ``drb_first_run.py`` since 2026-11-29) add a last section: for each
method, split and held-out-site group, the held-out segment that holds the largest
share of the squared error, its RMSE and bias there, and the group's RMSE without
it, so that a split's score carried by one segment shows as such.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

GROUPS = ("held-out dates, fitted sites", "held-out sites, fitted dates",
          "held-out sites, held-out dates")
SHORT = {GROUPS[0]: "dates, at fitted sites", GROUPS[1]: "sites, on fitted dates",
         GROUPS[2]: "sites and dates"}
SINGLE = ("fine-only", "remap")
REGRESSION = "air-temperature regression"


def column_name(record: dict[str, Any], assumed_tasks: list[str] | None) -> str:
    """The table column of one report: its method, and for ASYNC-MSGL its stage-A tasks."""
    method = str(record["method"])
    if method != "async-msgl":
        return method
    stage_a = record.get("stage_a")
    tasks = stage_a["tasks"] if stage_a else assumed_tasks
    if tasks is None:
        return "async-msgl (stage A not recorded)"
    return "async-msgl, stage A " + " ".join(tasks)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0)."""
    return statistics.fmean(values), statistics.pstdev(values)


def paired_gain(method: dict[int, dict[str, float]], base: dict[int, dict[str, float]],
                group: str) -> str:
    """``100 (1 - method / base)`` on each split both have: mean, 95% t-interval, wins."""
    seeds = sorted(set(method) & set(base))
    gains = [100.0 * (1.0 - method[s][group] / base[s][group]) for s in seeds]
    wins = sum(g > 0 for g in gains)
    if len(gains) < 2:
        return f"{gains[0]:.1f}% (one split)" if gains else "no common split"
    from scipy.stats import t

    half = float(t.ppf(0.975, len(gains) - 1)) * statistics.stdev(gains) / len(gains) ** 0.5
    mean = statistics.fmean(gains)
    return f"{mean:.1f}% ({mean - half:.1f} to {mean + half:.1f}; {wins} of {len(gains)})"


def gather(reports: list[tuple[Path, dict[str, Any]]], assumed_tasks: list[str] | None
           ) -> tuple[dict[str, dict[int, dict[str, float]]], dict[int, dict[str, float]],
                      dict[int, dict[str, int]]]:
    """RMSE by column, seed and group; the regression's RMSE and n by seed and group
    (``reports``: each file's path and its JSON)."""
    table: dict[str, dict[int, dict[str, float]]] = {}
    regression: dict[int, dict[str, float]] = {}
    counts: dict[int, dict[str, int]] = {}
    held: dict[int, tuple[list[int], Path]] = {}
    epochs: dict[int, Path] = {}
    for path, record in reports:
        seed = int(record["seed"])
        if seed in held and held[seed][0] != record["held_out_segments"]:
            sys.exit(f"{path} and {held[seed][1]} hold out different segments for seed {seed}")
        held.setdefault(seed, (record["held_out_segments"], path))
        epochs.setdefault(int(record["epochs"]), path)
        column = column_name(record, assumed_tasks)
        if seed in table.setdefault(column, {}):
            sys.exit(f"{path}: a second report of {column} on seed {seed}")
        table[column][seed] = {g: float(record["results"][g]["fine_msgl"]["rmse"]) for g in GROUPS}
        regression[seed] = {g: float(record["results"][g]["fine_baseline"]["rmse"]) for g in GROUPS}
        counts[seed] = {g: int(record["results"][g]["fine_msgl"]["n"]) for g in GROUPS}
    if len(epochs) > 1:
        sys.exit("the reports were fitted for different numbers of epochs: "
                 + ", ".join(f"{e} ({p})" for e, p in sorted(epochs.items())))
    return table, regression, counts


def markdown(table: dict[str, dict[int, dict[str, float]]], regression: dict[int, dict[str, float]],
             counts: dict[int, dict[str, int]]) -> str:
    """The table: a row per group and split, then the means and the gains."""
    # the multi-scale columns: MSGL, then ASYNC-MSGL by stage A (see column_name)
    multi = [c for c in ("msgl",) if c in table]
    multi += sorted(c for c in table if c.startswith("async-msgl"))
    single = [c for c in SINGLE if c in table]
    order = multi + single + sorted(c for c in table if c not in multi + single)
    seeds = sorted(regression)
    lines = ["| held out | seed | " + " | ".join(order) + f" | {REGRESSION} | n |",
             "|---|---|" + "---|" * (len(order) + 2)]
    means: dict[str, dict[str, float]] = {c: {} for c in order}
    for group in GROUPS:
        for i, seed in enumerate(seeds):
            cells = [f"{table[c][seed][group]:.2f}" if seed in table[c] else "–" for c in order]
            lines.append(f"| {SHORT[group] if i == 0 else ''} | {seed} | " + " | ".join(cells)
                         + f" | {regression[seed][group]:.2f} | {counts[seed][group]:,} |")
        cells = []
        for c in order:
            values = [table[c][s][group] for s in seeds if s in table[c]]
            mean, std = mean_std(values)
            means[c][group] = mean
            mark = "" if len(values) == len(seeds) else f" ({len(values)} of {len(seeds)} splits)"
            cells.append(f"{mean:.2f} +- {std:.2f}{mark}")
        mean, std = mean_std([regression[s][group] for s in seeds])
        lines.append("| | mean +- std | " + " | ".join(cells) + f" | {mean:.2f} +- {std:.2f} | |")
    if single and multi:
        lines += ["", "Below the better single-scale mean of each group ("
                  + " or ".join(single) + "; a negative figure is worse):", ""]
        base = {group: min(single, key=lambda s: means[s][group]) for group in GROUPS}
        for c in multi:
            gains = []
            for group in GROUPS:
                best = means[base[group]][group]
                gains.append(f"{SHORT[group]}: {100 * (1 - means[c][group] / best):.1f}%")
            lines.append(f"* {c}: " + "; ".join(gains))
        lines += ["", "Split by split against that baseline (the mean of the splits' own gains, "
                  "its 95% Student-t interval, and on how many splits the method is better):", ""]
        for c in multi:
            parts = []
            for group in GROUPS:
                b = base[group]
                parts.append(f"{SHORT[group]} {paired_gain(table[c], table[b], group)} against {b}")
            lines.append(f"* {c}: " + "; ".join(parts))
    if any(len(table[c]) != len(seeds) for c in order):
        lines += ["", "A column with fewer splits than the table is averaged over its own "
                  "splits only; its gain is then not of the same splits as the baseline's."]
    return "\n".join(lines)


def largest_segments(records: list[dict[str, Any]], assumed_tasks: list[str] | None) -> str:
    """For each report with ``held_out_by_segment``: the held-out segment carrying the
    largest share of the fine squared error in each held-out-site group ("" if none has)."""
    rows = []
    skipped = 0
    for record in records:
        segments = record.get("held_out_by_segment")
        if not segments:
            skipped += 1
            continue
        cells = []
        for group in GROUPS[1:]:
            scores = [(seg, v[group]["fine_msgl"]) for seg, v in segments.items()
                      if v[group]["fine_msgl"]["n"]]
            sse = {seg: f["n"] * f["rmse"] ** 2 for seg, f in scores}
            total, n = sum(sse.values()), sum(f["n"] for _, f in scores)
            if not scores or total == 0:
                cells.append("–")
                continue
            seg, f = max(scores, key=lambda item: sse[item[0]])
            rest = n - f["n"]
            without = f"{((total - sse[seg]) / rest) ** 0.5:.2f}" if rest else "–"
            cells.append(f"{seg}: {100 * sse[seg] / total:.0f}%, {f['rmse']:.2f} ({f['bias']:+.2f}), "
                         f"without it {without}")
        rows.append((column_name(record, assumed_tasks), int(record["seed"]), cells))
    if not rows:
        return ""
    lines = ["The held-out segment with the largest share of each report's squared error at "
             "the held-out sites (share, its RMSE and bias, the group's RMSE without it):", "",
             "| method | seed | " + " | ".join(SHORT[g] for g in GROUPS[1:]) + " |",
             "|---|---|---|---|"]
    lines += [f"| {c} | {seed} | " + " | ".join(cells) + " |" for c, seed, cells in sorted(rows)]
    if skipped:
        lines += ["", f"{skipped} report(s) without held_out_by_segment (written before it) left out."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="JSON files of drb_first_run.py")
    parser.add_argument("--stage-a-tasks", nargs="+", default=None,
                        choices=["coarse", "remap", "remap-fine"],
                        help="stage-A tasks of ASYNC-MSGL reports that do not name theirs")
    args = parser.parse_args(argv)
    reports = [(path, json.loads(path.read_text())) for path in args.reports]
    table, regression, counts = gather(reports, args.stage_a_tasks)
    print(markdown(table, regression, counts))
    segments = largest_segments([record for _, record in reports], args.stage_a_tasks)
    if segments:
        print("\n" + segments)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""docs/scripts/drb_splits.py: the pooled table of drb_first_run.py reports, and its refusals."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parents[1] / "docs" / "scripts" / "drb_splits.py"
_spec = importlib.util.spec_from_file_location("drb_splits", _PATH)
assert _spec is not None and _spec.loader is not None
splits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(splits)

GROUPS = splits.GROUPS


def _report(tmp_path: Path, method: str, seed: int, fine: tuple[float, float, float],
            regression: tuple[float, float, float] = (4.0, 4.0, 4.0), held: list[int] | None = None,
            stage_a: list[str] | None = None, epochs: int = 20, name: str | None = None) -> Path:
    def score(rmse: float, n: int) -> dict[str, Any]:
        return {"n": n, "rmse": rmse, "mae": rmse * 0.8, "bias": 0.0}

    record = {
        "produced": "2026-01-01 00:00 UTC", "where": "here", "epochs": epochs, "method": method,
        "seed": seed, "held_out_segments": held if held is not None else [seed + 1, seed + 2],
        "build_s": 1.0, "fit_s": 2.0,
        "stage_a": {"period": [["1979-01-01", "1980-03-31"]], "tasks": stage_a,
                    "variable": "seg_temp"} if stage_a else None,
        "results": {g: {"coarse_msgl": score(9.0, 5), "coarse_baseline": score(9.0, 5),
                        "fine_msgl": score(f, 100 + i), "fine_baseline": score(r, 100 + i)}
                    for i, (g, f, r) in enumerate(zip(GROUPS, fine, regression))},
    }
    path = tmp_path / (name or f"{method}_{seed}_{'-'.join(stage_a or [])}.json")
    path.write_text(json.dumps(record))
    return path


def _rows(out: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("|")]


def test_table_means_and_gains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [
        _report(tmp_path, "msgl", 0, (2.0, 3.0, 3.0)),
        _report(tmp_path, "msgl", 1, (2.4, 3.4, 4.0)),
        _report(tmp_path, "fine-only", 0, (2.5, 4.0, 4.0)),
        _report(tmp_path, "fine-only", 1, (2.5, 3.6, 5.0)),
        _report(tmp_path, "remap", 0, (3.0, 3.5, 4.2)),
        _report(tmp_path, "remap", 1, (3.0, 3.7, 4.4)),
        # stage A named in the report, and one that names none (given on the command line)
        _report(tmp_path, "async-msgl", 0, (2.1, 3.1, 3.1), stage_a=["coarse", "remap"]),
        _report(tmp_path, "async-msgl", 1, (2.3, 3.3, 3.9), name="old.json"),
        _report(tmp_path, "async-msgl", 0, (9.0, 9.0, 9.0), stage_a=["coarse"]),
    ]
    assert splits.main([str(f) for f in files] + ["--stage-a-tasks", "coarse", "remap"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    header = rows[0]
    assert header[2:7] == ["msgl", "async-msgl, stage A coarse", "async-msgl, stage A coarse remap",
                           "fine-only", "remap"]
    # group 2 (held-out sites, fitted dates): seed rows, then the mean +- population std
    by_label = {(r[0], r[1]): r for r in rows[2:]}
    first = by_label[("sites, on fitted dates", "0")]
    assert first[2:7] == ["3.00", "9.00", "3.10", "4.00", "3.50"]
    assert first[7:] == ["4.00", "101"]
    mean_rows = [r for r in rows if r[1] == "mean +- std"]
    assert len(mean_rows) == 3
    assert mean_rows[1][2] == "3.20 +- 0.20"        # msgl: 3.0 and 3.4
    assert mean_rows[1][3] == "9.00 +- 0.00 (1 of 2 splits)"  # one split only
    assert mean_rows[2][5] == "4.50 +- 0.50"        # fine-only: 4.0 and 5.0
    # gains against the better single-scale mean of each group: fine-only 2.5 / remap 3.6 / remap 4.3
    gains: dict[str, str] = {}
    paired: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("* "):
            (paired if line.split(":")[0][2:] in gains else gains)[line.split(":")[0][2:]] = line
    assert gains["msgl"] == ("* msgl: dates, at fitted sites: 12.0%; sites, on fitted dates: "
                             f"{100 * (1 - 3.2 / 3.6):.1f}%; sites and dates: {100 * (1 - 3.5 / 4.3):.1f}%")
    assert "async-msgl, stage A coarse remap" in gains
    # paired on the splits both have: 20% and 4% at the held-out dates (mean 12, sd
    # 11.31, t(0.975, 1) = 12.706: 12 +- 101.6)
    assert paired["msgl"].startswith("* msgl: dates, at fitted sites 12.0% (-89.6 to 113.6; 2 of 2) "
                                     "against fine-only; ")
    assert "fewer splits than the table" in out


def test_reports_without_stage_a_stay_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [_report(tmp_path, "async-msgl", 0, (2.0, 3.0, 3.0)),
             _report(tmp_path, "fine-only", 0, (2.5, 4.0, 4.0))]
    assert splits.main([str(f) for f in files]) == 0
    assert "async-msgl (stage A not recorded)" in capsys.readouterr().out


def test_refusals(tmp_path: Path) -> None:
    a = _report(tmp_path, "msgl", 0, (2.0, 3.0, 3.0))
    twice = _report(tmp_path, "msgl", 0, (2.1, 3.0, 3.0), name="again.json")
    with pytest.raises(SystemExit, match="second report of msgl on seed 0"):
        splits.main([str(a), str(twice)])
    other_split = _report(tmp_path, "fine-only", 0, (2.5, 4.0, 4.0), held=[7, 8])
    with pytest.raises(SystemExit, match="different segments for seed 0"):
        splits.main([str(a), str(other_split)])
    longer = _report(tmp_path, "fine-only", 0, (2.5, 4.0, 4.0), epochs=30)
    with pytest.raises(SystemExit, match="different numbers of epochs"):
        splits.main([str(a), str(longer)])


def test_paired_gain_over_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Gains of 10, 20 and 0% on three splits: mean 10, sd 10, t(0.975, 2) = 4.303.
    method = {0: {g: 1.8 for g in GROUPS}, 1: {g: 1.6 for g in GROUPS}, 2: {g: 2.0 for g in GROUPS}}
    base = {s: {g: 2.0 for g in GROUPS} for s in (0, 1, 2)}
    assert splits.paired_gain(method, base, GROUPS[0]) == "10.0% (-14.8 to 34.8; 2 of 3)"
    assert splits.paired_gain({0: method[0]}, base, GROUPS[1]) == "10.0% (one split)"
    assert splits.paired_gain({5: method[0]}, base, GROUPS[1]) == "no common split"
    files = [_report(tmp_path, "msgl", s, (m,) * 3) for s, m in enumerate((1.8, 1.6, 2.0))]
    files += [_report(tmp_path, "fine-only", s, (2.0, 2.0, 2.0)) for s in range(3)]
    files += [_report(tmp_path, "remap", s, (2.5, 1.0, 2.5)) for s in range(3)]
    assert splits.main([str(f) for f in files]) == 0
    out = capsys.readouterr().out
    # the baseline of each group is the single-scale method with the lower mean there
    assert ("* msgl: dates, at fitted sites 10.0% (-14.8 to 34.8; 2 of 3) against fine-only; "
            "sites, on fitted dates -80.0% (-129.7 to -30.3; 0 of 3) against remap") in out


def test_the_segment_carrying_a_split_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def seg(n: int, rmse: float, bias: float) -> dict[str, Any]:
        return {"fine_msgl": {"n": n, "rmse": rmse, "mae": rmse, "bias": bias},
                "coarse_msgl": {"n": 0, "rmse": float("nan"), "mae": float("nan"), "bias": float("nan")}}

    with_segments = _report(tmp_path, "msgl", 0, (2.0, 3.0, 3.0))
    record = json.loads(with_segments.read_text())
    # squared errors 10 * 4 = 40 and 30 * 1 = 30 on fitted dates: segment 7 holds 4/7;
    # on held-out dates segment 8 is the only one observed
    record["held_out_by_segment"] = {
        "7": {GROUPS[1]: seg(10, 2.0, 1.5), GROUPS[2]: seg(0, float("nan"), float("nan"))},
        "8": {GROUPS[1]: seg(30, 1.0, -0.5), GROUPS[2]: seg(5, 3.0, 2.0)},
    }
    with_segments.write_text(json.dumps(record))
    older = _report(tmp_path, "fine-only", 0, (2.5, 3.5, 3.5))
    assert splits.main([str(with_segments), str(older)]) == 0
    out = capsys.readouterr().out
    rows = {(r[0], r[1]): r[2:] for r in _rows(out) if r[0] == "msgl"}
    assert rows[("msgl", "0")] == ["7: 57%, 2.00 (+1.50), without it 1.00", "8: 100%, 3.00 (+2.00), without it –"]
    assert "1 report(s) without held_out_by_segment" in out
    assert not any(r[0] == "fine-only" and len(r) == 4 and ":" in r[2] for r in _rows(out))

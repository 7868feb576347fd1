"""Every benchmark script runs on a small setting and prints what its docstring says.

Each runs as the documented command would (a subprocess in ``benchmarks/``, one
torch thread), at a size of seconds; the lines are parsed as JSON and their
correctness checks (differences from references, recalls) read. Timings are not
asserted. Without these, a script whose API moved on stopped with a traceback and
reported nothing until someone ran it by hand.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
DRB_DIR = os.environ.get("XMSGL_DATA_DIR")


@functools.cache
def _scratch() -> str:
    """This test process's temporary folder for the scripts' scratch files (their fitted
    models): the test workers run side by side, and two scripts writing one model
    folder at once must not meet there."""
    folder = tempfile.mkdtemp(prefix="xmsgl-bench-tests-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def run_bench(script: str, *args: str, timeout: float = 600) -> list[dict[str, Any]]:
    """The JSON lines the benchmark prints on stdout (every stdout line must be one)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "TMPDIR": _scratch()}
    proc = subprocess.run([sys.executable, script, *args], cwd=BENCH, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"{script} printed nothing"
    return [json.loads(line) for line in lines]


def by_what(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r["what"], []).append(r)
    return out


def test_bench_cell_matches_its_reference() -> None:
    recs = by_what(run_bench("bench_cell.py", "--synthetic", "--reaches", "300", "--days", "30",
                             "--repeats", "1", "--threads", "1"))
    assert recs["cell_train_window"][0]["max_abs_diff_h"] < 1e-4
    assert recs["cell_train_window"][0]["max_rel_diff_grad"] < 1e-3
    assert recs["cell_inference"][0]["max_abs_diff_h"] < 1e-4
    assert recs["cell_train_window"][0]["commit"]


def test_bench_small_data_quick() -> None:
    lines = run_bench("bench_small_data.py", "--quick")
    ops = {r["layout"]: r for r in lines if r["case"] == "ops"}
    assert ops["blocks"]["aten_ops_forward_backward"] < ops["pieces"]["aten_ops_forward_backward"]
    assert ops["blocks"]["max_state_difference"] == 0.0
    assert [r["ema_decay"] for r in lines if r["case"] == "ema"] == [None, 0.95]
    few = [r for r in lines if r["case"] == "few"]
    assert {r["method"] for r in few} == {"msgl", "fine-only", "remap"}
    assert [r["few_observations_warning"] for r in few] == [True, True, False]


def test_bench_knn_candidate_search_is_exact_within_its_candidates() -> None:
    recs = by_what(run_bench("bench_knn.py", "--reaches", "500", "--repeat", "1", "--threads", "1"))
    assert set(recs) == {"reference", "brute", "static", "candidates"}
    assert recs["brute"][0]["recall"] == 1.0
    cand = recs["candidates"][0]
    assert cand["recall_within_candidates"] == 1.0
    assert cand["peak_rss_mib_after_candidates"] > 0


def test_bench_train_quick_prints_epochs_and_ratios() -> None:
    recs = by_what(run_bench("bench_train.py", "--quick", "--threads", "1", "--ref-windows", "1"))
    epochs = recs["train_epoch_msgl"]
    assert [r["weighting"] for r in epochs] == ["equal", "mgda"]
    assert all(r["seconds_per_epoch"] > 0 and r["loss"] == r["loss"] for r in epochs)
    for what in ("train_epoch_reference_dense_fine_task_only",
                 "train_epoch_reference_dense_msgl_three_tasks"):
        ref = recs[what][0]
        assert ref["timed_windows"] == 1
        # Both figures are printed rounded (to 0.01 and 0.1 s), hence the tolerance.
        assert ref["speed_ratio_vs_equal"] == pytest.approx(
            ref["seconds_per_epoch_extrapolated"] / epochs[0]["seconds_per_epoch"], abs=0.1, rel=0.1)


def test_bench_train_without_references_stops_after_the_network() -> None:
    recs = run_bench("bench_train.py", "--quick", "--threads", "1", "--ref-windows", "0")
    assert [r["what"] for r in recs] == ["train_epoch_msgl", "train_epoch_msgl"]


def test_bench_inference_reference_gives_downscales_values() -> None:
    recs = by_what(run_bench("bench_inference.py", "--sizes", "500", "--days", "60", "--threads",
                             "1", "--repeats", "2", "--reference-repeats", "2"))
    line = recs["downscale_throughput"][0]
    # The seconds are printed to 0.01 s, a call here takes a few hundredths: the rate
    # lies within what the rounded figure allows (a relative tolerance failed on 0.04).
    work, sec = line["n_reach"] * line["days"], line["seconds_best_call"]
    assert work / (sec + 0.005) <= line["reach_days_per_s"] <= work / max(sec - 0.005, 1e-9)
    # The peaks: the calls' high-water mark starts from what is resident when they
    # start (Linux), and the process's covers both the input and the calls.
    if line["peak_rss_gb_calls"] is not None:
        assert 0 < line["rss_gb_before_calls"] <= line["peak_rss_gb_calls"] <= line["peak_rss_gb"] + 0.01
    assert 0 < line["peak_rss_gb_input"] <= line["peak_rss_gb"]
    ref = recs["downscale_reference_dense_straightforward"][0]
    assert ref["n_reach"] == line["n_reach"]
    # Like for like: the reference's best against the best call, its first against the first.
    assert len(ref["seconds_each_run"]) == 2 and ref["seconds"] == min(ref["seconds_each_run"])
    calls = line["seconds_each_call"]
    for key, (r, c) in {"speed_ratio_best": (ref["seconds"], min(calls)),
                        "speed_ratio_first": (ref["seconds_each_run"][0], calls[0])}.items():
        # Both sides are printed to 0.01 s and the ratio to 0.1: bounds from the rounding.
        lo, hi = max(r - 0.005, 0) / (c + 0.005), (r + 0.005) / max(c - 0.005, 1e-9)
        assert lo - 0.05 <= ref[key] <= hi + 0.05, key
    # The straightforward dense computation and downscale agree to float32 rounding.
    assert ref["max_abs_difference_degc"] < 1e-3


def test_bench_accuracy_records_its_setting_and_pools_by_seed(tmp_path: Path) -> None:
    recs = run_bench("bench_accuracy.py", "--n-segments", "8", "--years", "3", "--epochs", "1",
                     "--pretrain-epochs", "1", "--seeds", "2", "--keep", "0.2", "--stride", "365",
                     "--threads", "1", "--methods", "async-msgl", "fine-only")
    fits = by_what(recs)["test_rmse_all_reaches"]
    assert {(r["method"], r["seed"]) for r in fits} == {(m, s) for m in ("async-msgl", "fine-only")
                                                         for s in (0, 1)}
    assert all(r["pretrain_epochs"] == 1 and r["fit_seconds"] >= 0 and r["downscale_seconds"] >= 0
               for r in fits)
    # ASYNC-MSGL's lines say which tasks its stage A trained (fit's default here).
    assert [r.get("stage_a_tasks") for r in fits if r["method"] == "async-msgl"] == \
        [["coarse", "remap", "remap-fine"]] * 2
    assert all("stage_a_tasks" not in r for r in fits if r["method"] != "async-msgl")
    log = tmp_path / "run.log"
    log.write_text("\n".join(json.dumps(r) for r in recs))
    paired = by_what(run_bench("summarize_accuracy.py", str(log)))["paired_gain"]
    assert [(p["method"], p["baseline"], p["seeds"]) for p in paired] == [("async-msgl", "fine-only", [0, 1])]
    assert paired[0]["stage_a_tasks"] == ["coarse", "remap", "remap-fine"]
    rmse = {(r["method"], r["seed"]): r["rmse"] for r in fits}
    assert paired[0]["gain_by_seed"] == pytest.approx(
        [round(1 - rmse[("async-msgl", s)] / rmse[("fine-only", s)], 4) for s in (0, 1)], abs=1e-4)


def test_bench_graph_quick() -> None:
    recs = run_bench("bench_graph.py", "--quick")
    first = recs[0]
    assert first["what"] == "delaware_sized_random"
    assert first["speed_ratio"] == pytest.approx(first["reference_seconds"] / first["seconds"], rel=0.05)
    assert all(r["nnz"] > 0 for r in recs if "nnz" in r)
    chain = next(r for r in recs if r["what"] == "deep_chain_hops_and_cycles")
    assert chain["n_nodes"] == 20_000
    assert chain["speed_ratio"] == pytest.approx(chain["reference_seconds"] / chain["seconds"], rel=0.1)


def test_bench_scale_lazy_against_memory() -> None:
    recs = by_what(run_bench("bench_scale.py", "--sizes", "3000", "--memory-sizes", "3000",
                             "--reach-chunk", "1000", "--workers", "1", "--call-sizes", "3000",
                             "--zarr-sizes", "3000", "--writer", "xmsgl"))
    lazy = recs["downscale_lazy"][0]
    assert lazy["seconds_end_to_end"] >= lazy["seconds"]
    assert lazy["reach_days_per_s"] == pytest.approx(
        lazy["n_reach"] * lazy["days"] / lazy["seconds_end_to_end"], rel=0.05)
    assert "reach_days_per_s" in recs["downscale_memory"][0]
    assert "reach_days_per_s" not in recs["downscale_call"][0]  # nothing computed there
    assert recs["downscale_zarr"][0]["writer"] == "xmsgl" and recs["downscale_zarr"][0]["n_reach"] == lazy["n_reach"]
    assert recs["lazy_vs_memory"][0]["max_abs_diff_degC"] <= recs["lazy_vs_memory"][0]["goal_max_abs_diff_degC"]


def test_bench_scale_dmsge_runs_every_case() -> None:
    # Halo depths 1-3 of the river-neighbour case are measured, not promised (the
    # lazy halo tests check them); two depths keep the run short.
    recs = by_what(run_bench("bench_scale_dmsge.py", "--halos", "0", "none"))
    assert len(recs["one_block"]) == 8 and len(recs["refused"]) == 4
    assert [r["halo"] for r in recs["hydro_halo"]] == [0, None] * 3
    assert all(r["max_abs_diff_degC"] == 0.0 for r in recs["one_block"])
    assert all("BlockDependenceError" in r["error"] for r in recs["refused"])
    # The default halo (null) is exact for river neighbours only.
    assert all(r["max_abs_diff_degC"] <= 1e-5 for r in recs["hydro_halo"] if r["halo"] is None)


def test_bench_halo_small() -> None:
    recs = run_bench("bench_halo.py", '{"max_hops": 3}', "[0]", "[null]", "40")
    assert recs[0]["what"] == "halo_vs_one_block"
    assert recs[0]["max_abs_diff_degC"] <= recs[0]["goal_max_abs_diff_degC"]


def test_bench_synthetic_quick() -> None:
    recs = run_bench("bench_synthetic.py", "--quick")
    assert all(r["seconds"] > 0 for r in recs)


def test_soak_quick_memory_stays_flat() -> None:
    recs = by_what(run_bench("soak.py", "--quick"))
    result = recs["soak_result"][0]
    assert result["growth_pct"] <= result["max_growth_pct"]


@pytest.mark.skipif(not (DRB_DIR and Path(DRB_DIR).is_dir()),
                    reason="XMSGL_DATA_DIR is not set to the Delaware River Basin mirror files")
def test_bench_drb_builds_cold_and_cached() -> None:
    recs = run_bench("bench_drb.py")
    assert [r["what"].split()[-1] for r in recs] == ["cold", "cached"]
    assert recs[0]["size"] == recs[1]["size"]
    assert recs[1]["ratio_to_cached"] == 1.0

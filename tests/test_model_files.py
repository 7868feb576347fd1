"""Model files and training guards under attack or accident.

A saved model is a folder with ``config.json`` and ``weights.pt``. These tests
tamper with it, truncate it, plant a malicious pickle in it and kill a save midway,
and check that xmsgl answers each time with a typed error (or keeps the previous
model), never with an obscure exception or by running code from the file.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xmsgl

torch = pytest.importorskip("torch")

from tests.conftest import FAST_FIT, ROOT, as_saved_before_digests  # noqa: E402
from xmsgl import train  # noqa: E402
from xmsgl.exceptions import DataError, ModelMismatchError, TrainingError, XmsglError  # noqa: E402
from xmsgl.model import Downscaler, fit, load  # noqa: E402

FAST = FAST_FIT


@pytest.fixture(scope="module")
def basin() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(
        n_segments=4, start="2001-01-01", end="2001-04-30", seed=5, reach_obs_share=0.3
    )


@pytest.fixture(scope="module")
def model(basin: xr.Dataset) -> Downscaler:
    return fit(basin, method="msgl", seed=0, **FAST)


@pytest.fixture
def saved(tmp_path: Path, model: Downscaler) -> Path:
    return model.save(tmp_path / "model.xmsgl")


# ------------------------------------------------------------------ damaged files


def test_tampered_weights_are_refused(saved: Path) -> None:
    w = saved / "weights.pt"
    blob = bytearray(w.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    w.write_bytes(bytes(blob))
    with pytest.raises(XmsglError, match="does not match"):
        load(saved)


def test_load_leaves_the_callers_random_stream_alone(saved: Path) -> None:
    # Building the network drew its starting weights from torch's global stream.
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load(saved)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kind", ["network", "baseline"])
def test_a_folder_replaced_while_it_is_read_is_read_again(saved: Path, model: Downscaler, basin: xr.Dataset,
                                                          monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    # A colleague's save(overwrite=True) between the reads of config.json and the
    # weights: the pair did not match, and the load failed as "stale or modified".
    from xmsgl.baselines import fit_baseline

    if kind == "baseline":
        first, second = fit_baseline(basin, "climatology"), fit_baseline(basin, "mohseni")
        saved = first.save(saved.parent / "b.xmsgl")
    else:
        first, second = model, fit(basin, method="msgl", seed=1, **FAST)
    swaps: list[object] = []
    real_open, real_read_bytes = open, Path.read_bytes

    def swap(file: object) -> None:
        if str(file).endswith(("weights.pt", "arrays.npz")) and str(file).startswith(str(saved)) \
                and not swaps:  # config.json was read; the folder changes under the reader
            swaps.append(file)
            second.save(saved, overwrite=True)

    def opening(file: object, *args: object, **kwargs: object) -> object:
        swap(file)
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    def reading(self: Path) -> bytes:
        swap(self)
        return real_read_bytes(self)

    monkeypatch.setattr("builtins.open", opening)
    monkeypatch.setattr(Path, "read_bytes", reading)
    got = xmsgl.load(saved)
    assert len(swaps) == 1  # the folder was replaced mid-read
    assert (got.sha256 == second.sha256) if kind == "network" else (got.method == second.method), got


@pytest.mark.parametrize("method", ["msgl", "async-msgl"])
def test_check_data_tells_the_data_a_model_learned_from(method: str) -> None:
    # The record named the targets only: a forcing or a static attribute changed gave
    # another model with the same record, and no call compared a dataset without refitting.
    from xmsgl.model import check_data

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2002-09-30", seed=3,
                                        reach_obs_share=0.3)
    m = fit(ds, method=method, seed=0, train=("2000-10-01", "2001-09-30"), val=("2001-10-01", "2002-05-31"),
            test=("2002-06-01", "2002-09-30"), **FAST)
    assert m.check_data(ds) == {"targets": True, "inputs": True}
    # Loaded again, in another order of the reaches: the same data.
    shuffled = ds.isel(reach=np.random.default_rng(0).permutation(ds.sizes["reach"]))
    assert check_data(m, shuffled) == {"targets": True, "inputs": True}
    # The test period's observations were never read.
    later = ds.copy(deep=True)
    later["reach_temp"][:, -10:] = 30.0
    later["seg_temp"][:, -10:] = 30.0
    assert check_data(m, later) == {"targets": True, "inputs": True}
    def observed(name: str) -> tuple[int, ...]:  # a training day's observation
        return tuple(int(i) for i in np.argwhere(np.isfinite(ds[name].values[:, :300]))[0])

    for name, where, key in (("reach_temp", observed("reach_temp"), "targets"),
                             ("seg_temp", observed("seg_temp"), "targets"),
                             ("reach_air_temp", (1, 20), "inputs")):
        changed = ds.copy(deep=True)
        changed[name].values[where] += 0.5
        got = check_data(m, changed)
        assert got[key] is False and got[{"targets": "inputs", "inputs": "targets"}[key]] is True, name
    static = next(str(v) for v in ds.data_vars if str(v) in m.config["variables"]["reach_vars"]
                  and "time" not in ds[v].dims)
    changed = ds.copy(deep=True)
    changed[static].values[0] += 0.1
    assert check_data(m, changed) == {"targets": True, "inputs": False}
    with pytest.raises(xmsgl.ParameterError, match="not of Dataset"):
        check_data(ds, ds)  # type: ignore[arg-type]
    # A variable the fit read is missing: named (it was a KeyError).
    with pytest.raises(xmsgl.SchemaError, match=rf"lacks \['{static}'\], which the {method} model's fit"):
        check_data(m, ds.drop_vars(static))


@pytest.mark.parametrize("method", ["climatology", "mohseni", "idw", "harmonic"])
def test_check_data_tells_the_data_a_baseline_learned_from(method: str) -> None:
    # The baselines recorded no data: check_data refused them.
    from xmsgl.baselines import fit_baseline, load_baseline

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2003-09-30", seed=3,
                                        reach_obs_share=0.3)
    model = fit_baseline(ds, method)
    reads_air = method == "mohseni"
    same = {"targets": True, "inputs": True if reads_air else None}
    assert model.check_data(ds) == same
    assert model.check_data(ds.isel(reach=np.random.default_rng(0).permutation(ds.sizes["reach"]))) == same
    later = ds.copy(deep=True)  # the test year's observations are not the fit's
    later["reach_temp"][:, -10:] = 30.0
    assert model.check_data(later) == same
    for name, key in (("reach_temp", "targets"), ("seg_temp", "targets"), ("reach_air_temp", "inputs")):
        changed = ds.copy(deep=True)
        changed[name].values[tuple(np.argwhere(np.isfinite(ds[name].values[:, :300]))[0])] += 0.5
        got = model.check_data(changed)
        want = dict(same)
        if key == "targets" or reads_air:
            want[key] = False
        assert got == want, name
    if reads_air:  # a variable the fit read is missing: named (it was a KeyError)
        with pytest.raises(xmsgl.SchemaError, match=r"lacks \['reach_air_temp'\], which the mohseni"):
            model.check_data(ds.drop_vars("reach_air_temp"))
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "b")
        assert load_baseline(Path(tmp) / "b").check_data(ds) == same
        from xmsgl.model import check_data

        assert check_data(str(Path(tmp) / "b"), ds) == same  # a folder, as downscale takes
    # The dataset's history (when it was built) is recorded but is not the baseline's identity.
    rebuilt = ds.copy()
    rebuilt.attrs["history"] = "built again"
    again = fit_baseline(rebuilt, method)
    assert again.config["data"]["history"] == "built again" and again.sha256 == model.sha256


def test_truncated_weights_are_refused(saved: Path) -> None:
    w = saved / "weights.pt"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(XmsglError, match="does not match"):
        load(saved)


class _Planted:
    """An object whose unpickling creates a file: stands for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def _plant(saved: Path, payload: object) -> None:
    """Replace the weights by ``payload`` and record its real sha256 in config.json."""
    torch.save(payload, saved / "weights.pt")
    _plant_hash(saved)


def _plant_hash(saved: Path) -> None:
    """Record the weights file's real sha256 in config.json."""
    import hashlib

    w = saved / "weights.pt"
    cfg = json.loads((saved / "config.json").read_text())
    cfg["weights"]["sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()
    (saved / "config.json").write_text(json.dumps(cfg))


def test_weights_saved_on_a_gpu_load_on_a_cpu_only_machine(saved: Path, model: Downscaler,
                                                            basin: xr.Dataset) -> None:
    # A file whose tensors were on cuda:0 when saved (as torch.save writes them from a
    # GPU) must load where there is none: the weights are read onto the CPU. Plain
    # torch.load of such a file fails on a machine without CUDA.
    from unittest import mock

    state = {k: v.detach().cpu() for k, v in model.net.state_dict().items()}
    with mock.patch("torch.serialization.location_tag", lambda storage: "cuda:0"):
        _plant(saved, state)
    if not torch.cuda.is_available():
        import pickle

        with pytest.raises((RuntimeError, pickle.UnpicklingError)):  # torch 2.3 says the latter
            torch.load(saved / "weights.pt", weights_only=True)
    back = load(saved)
    assert all(p.device.type == "cpu" for p in back.net.parameters())
    for (name, a), b in zip(model.net.state_dict().items(), back.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    xr.testing.assert_equal(basin.msgl.downscale(back, device="cpu"),
                            basin.msgl.downscale(model, device="cpu"))


def test_malicious_weights_run_no_code(saved: Path, tmp_path: Path) -> None:
    # config.json is as easy to edit as the weights, so the hash alone does not stop
    # a hostile file: weights_only loading must.
    marker = tmp_path / "code_ran"
    _plant(saved, {"w": _Planted(marker)})
    with pytest.raises(Exception):  # noqa: B017 - any refusal; the typed one is tested below
        load(saved)
    assert not marker.exists(), "loading a model ran code hidden in its weights file"


def test_malicious_weights_give_a_typed_error(saved: Path, tmp_path: Path) -> None:
    _plant(saved, {"w": _Planted(tmp_path / "code_ran")})
    with pytest.raises(XmsglError, match=r"cannot be read as plain tensors \(UnpicklingError: ") as err:
        load(saved)
    # What torch found is said, never its advice to load the file with weights_only=False
    # or to allow the function it calls (either would run the code).
    said = str(err.value)
    assert re.search(r"Unsupported (global: GLOBAL|class) (__builtin__\.|builtins\.)?getattr", said), said
    assert not any(a in said for a in ("weights_only", "False", "safe_globals", "allowlist")), said
    assert "from a source you trust" in said
    # A plain pickle (not torch's format) is refused without torch's note on its protocol.
    import pickle

    (saved / "weights.pt").write_bytes(pickle.dumps({"w": _Planted(tmp_path / "code_ran")}, protocol=4))
    _plant_hash(saved)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(XmsglError, match=r"plain tensors \(UnpicklingError: ") as err:
            load(saved)
    assert "weights_only" not in str(err.value)
    assert not (tmp_path / "code_ran").exists()


@pytest.mark.parametrize("torch_says, found", [
    # torch 2.13: advice in sentences and numbered items around what it found.
    ("Weights only load failed. This file can still be loaded, to do so you have two options, \x1b[1mdo "
     "those steps only if you trust the source of the checkpoint\x1b[0m. \n\t(1) In PyTorch 2.6, we "
     "changed the default value of the `weights_only` argument in `torch.load` from `False` to `True`. "
     "Re-running `torch.load` with `weights_only` set to `False` will likely succeed, but it can result "
     "in arbitrary code execution. Do it only if you got the file from a trusted source.\n\t(2) "
     "Alternatively, to load with `weights_only=True` please check the recommended steps in the "
     "following error message.\n\tWeightsUnpickler error: Unsupported global: GLOBAL evil.x\x1b]0;t\x07"
     " was not an allowed global by default. Please use `torch.serialization.add_safe_globals([evil.x])` "
     "or the `torch.serialization.safe_globals([evil.x])` context manager to allowlist this global if "
     "you trust this class/function.\n\nCheck the documentation of torch.load to learn more about "
     "types accepted by default with weights_only https://pytorch.org/docs/stable/generated/torch.load.html.",
     "Unsupported global: GLOBAL evil.x\\x1b]0;t\\x07 was not an allowed global by default."),
    # torch 2.3: all on one line.
    ("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
     "succeed, but it can result in arbitrary code execution.Do it only if you get the file from a "
     "trusted source. WeightsUnpickler error: Unsupported class __builtin__.getattr",
     "Unsupported class __builtin__.getattr"),
    # What was found shares the first line with the advice's start.
    ("Weights only load failed. ``torch.distributed.tensor`` must be imported to load DTensors\n In "
     "PyTorch 2.6, we changed the default value of the `weights_only` argument in `torch.load` from "
     "`False` to `True`. Re-running `torch.load` with `weights_only` set to `False` will likely "
     "succeed, but it can result in arbitrary code execution.",
     "``torch.distributed.tensor`` must be imported to load DTensors"),
    ("Cannot use ``weights_only=True`` with TorchScript archives passed to ``torch.load``. In PyTorch "
     "2.6, we changed the default value of the `weights_only` argument in `torch.load` from `False` to "
     "`True`. Re-running `torch.load` with `weights_only` set to `False` will likely succeed.",
     "Cannot use ``weights_only=True`` with TorchScript archives passed to ``torch.load``."),
    ("PytorchStreamReader failed reading zip archive: failed finding central directory",
     "PytorchStreamReader failed reading zip archive: failed finding central directory"),
    # A crafted name, quoted in the advice too, with a sentence's end and a line break in it.
    ("Weights only load failed.\nWeightsUnpickler error: Unsupported global: GLOBAL mod.Bad. N\u2028ame was "
     "not an allowed global by default. Please use `torch.serialization.add_safe_globals([mod.Bad. "
     "N\u2028ame])` or the `torch.serialization.safe_globals([mod.Bad. N\u2028ame])` context manager to "
     "allowlist this global if you trust this class/function.\n\nCheck the documentation of torch.load.",
     "Unsupported global: GLOBAL mod.Bad. N\\u2028ame was not an allowed global by default."),
    ("Weights only load failed.\nWeightsUnpickler error: \n\nCan only build Tensor, Parameter, OrderedDict "
     "or types allowlisted via `add_safe_globals`, but got <class 'dict'>",
     "Can only build Tensor, Parameter, OrderedDict or allowed types, but got <class 'dict'>"),
])
def test_a_refused_weights_file_is_said_without_torchs_advice(torch_says: str, found: str) -> None:
    # What torch found, never its advice to load the file anyway (weights_only=False,
    # allowing the functions it calls: either would run them), nor a name's escapes.
    from xmsgl.nn.weights import _what_torch_found

    assert _what_torch_found(RuntimeError(torch_says)) == found
    assert _what_torch_found(EOFError()) == "the file ended early"


def test_folders_are_written_as_version_2_and_version_1_is_read_as_before(
        saved: Path, basin: xr.Dataset, model: Downscaler) -> None:
    # Readers from before version 2 misread fields they did not know (a dmsge
    # backbone's positions in km): a higher version makes them ask for an upgrade.
    import numpy as np

    cfg = json.loads((saved / "config.json").read_text())
    assert cfg["format_version"] == 2
    cfg["format_version"] = 1
    as_saved_before_digests(cfg)
    (saved / "config.json").write_text(json.dumps(cfg))
    np.testing.assert_array_equal(basin.msgl.downscale(load(saved)).values, basin.msgl.downscale(model).values)


@pytest.mark.parametrize("version", [0, -5, True, 1.9, "1", None])
def test_format_versions_that_are_not_known_integers_are_refused(saved: Path, version) -> None:
    cfg = json.loads((saved / "config.json").read_text())
    if version is None:
        cfg.pop("format_version")
    else:
        cfg["format_version"] = version
    (saved / "config.json").write_text(json.dumps(cfg))
    # Not a newer version, so not "upgrade xmsgl" (as it once said): a damaged folder.
    with pytest.raises(DataError, match=r"has format 'xmsgl-model' but no 'format_version' of 1 to "
                                        r"\d+ \(found .*\): the model folder is damaged; save or fetch"):
        load(saved)
    cfg["format_version"] = 99
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelMismatchError, match="version 99; this xmsgl reads .* upgrade xmsgl"):
        load(saved)


@pytest.mark.parametrize("method", ["fine-only", "remap", "direct", "async-msgl"])
def test_a_method_edited_into_another_is_refused(saved: Path, method: str) -> None:
    # MSGL's weights have the shape of fine-only's and remap's: with its method edited,
    # the folder loaded and predicted through another head, 5-6 degC off, without a word.
    cfg = json.loads((saved / "config.json").read_text())
    assert cfg["method"] == "msgl" and cfg["output"] == "fine" and cfg["stage_a"] is None
    cfg["method"] = method
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match=rf"method '{method}' (predicts with its|has an ASYNC-MSGL "
                                        r"stage A).*edited or damaged"):
        load(saved)


def test_corrupt_config_gives_a_typed_error(saved: Path) -> None:
    (saved / "config.json").write_text('{"format": "xmsgl-model", "weights": {')
    with pytest.raises(XmsglError, match="config.json"):
        load(saved)


def test_config_without_weights_entry_gives_a_typed_error(saved: Path) -> None:
    cfg = json.loads((saved / "config.json").read_text())
    del cfg["weights"]
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(XmsglError, match="weights"):
        load(saved)


def _replace_weights(folder: Path, state: dict) -> None:
    """Weights of the caller's choosing, with the sha256 recorded as saving records it."""
    import hashlib

    torch.save(state, folder / "weights.pt")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["weights"]["sha256"] = hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest()
    (folder / "config.json").write_text(json.dumps(cfg))


def test_weights_that_are_not_plain_tensors_of_their_own_values_are_refused(saved: Path,
                                                                          monkeypatch) -> None:
    # An expanded view of one number (a file of 34 KB) asked for 40 GB in the NaN check;
    # a key that is no name, a sparse or meta tensor and integer tensors failed with raw
    # errors or loaded.
    from xmsgl.nn import weights as wmod

    good = torch.load(saved / "weights.pt", weights_only=True)
    name = next(iter(good))
    for change, says in (
            ({name: torch.zeros(1).expand(100_000, 100_000)}, "10,000,000,000 values"),
            ({1: torch.zeros(1)}, "1"),
            ({name: torch.zeros(3).to_sparse()}, "sparse_coo"),
            ({name: torch.zeros(4, device="meta")}, "meta"),
            ({name: torch.zeros(4, dtype=torch.int64)}, "int64"),
            ({name: torch.zeros(4, dtype=torch.complex64)}, "complex64")):
        _replace_weights(saved, {**good, **change})
        with pytest.raises(DataError, match=r"holds entries that are not named, dense, floating-point "
                                            r"tensors.*" + re.escape(says)):
            load(saved)
    # A file larger than any network xmsgl saves is refused before it is read.
    _replace_weights(saved, good)
    monkeypatch.setattr(wmod, "MAX_WEIGHTS_BYTES", 1000)
    with pytest.raises(DataError, match=r"holds [\d,]+ bytes, more than the networks xmsgl saves take"):
        load(saved)
    monkeypatch.undo()
    assert load(saved).sha256


def test_weights_of_another_architecture_give_a_typed_error(saved: Path) -> None:
    cfg = json.loads((saved / "config.json").read_text())
    cfg["hyperparameters"]["hidden"] = int(cfg["hyperparameters"]["hidden"]) + 3
    (saved / "config.json").write_text(json.dumps(cfg))  # refused before the digests are read
    with pytest.raises(XmsglError):
        load(saved)


def test_fine_head_is_read_from_the_config(saved: Path, basin: xr.Dataset, tmp_path: Path) -> None:
    # A model fitted with the residual head and saved before fine_head was recorded
    # (no entry in config.json) loads with that head and predicts as before; the
    # default head is recorded, and an unknown one is refused.
    residual = fit(basin, method="msgl", seed=0, fine_head="residual", **FAST)
    path = residual.save(tmp_path / "residual.xmsgl")
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["hyperparameters"].pop("fine_head") == "residual"
    (path / "config.json").write_text(json.dumps(as_saved_before_digests(cfg)))
    older = load(path)
    assert type(older.net.fine_head).__name__ == "FineResidualHead"
    xr.testing.assert_equal(basin.msgl.downscale(older).drop_attrs(),
                            basin.msgl.downscale(residual).drop_attrs())
    assert json.loads((saved / "config.json").read_text())["hyperparameters"]["fine_head"] == "concat"
    assert type(load(saved).net.fine_head).__name__ == "FineHead"
    cfg = json.loads((saved / "config.json").read_text())
    cfg["hyperparameters"]["fine_head"] = "mlp"
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="fine_head"):
        load(saved)


@pytest.mark.parametrize("change", [
    lambda c: c["graph"].pop("fingerprint"),
    lambda c: c["graph"].pop("seg_ids"),
    lambda c: c.update(graph=[]),
    lambda c: c["hyperparameters"].pop("window"),
    lambda c: c["hyperparameters"].update(attn_window=0),
    lambda c: c["graph"].update(options={"bogus": 1}),
    lambda c: c["graph"].update(options={"max_hops": -3}),
    lambda c: c["graph"].update(options={"weighting": "cosine"}),
    lambda c: c["variables"]["static"].pop(c["variables"]["reach_vars"][0]),
    # These loaded and then failed or misbehaved at the first use.
    lambda c: c.update(history=5),
    lambda c: c.update(periods=5),
    lambda c: c["hyperparameters"].update(attn_window=10**9),
    lambda c: c["targets"].update(mean=1e308, std=1e308),
    lambda c: c["variables"]["static"].update({c["variables"]["reach_vars"][0]: "yes"}),
    # These loaded and then made repr or xmsgl info fail with a traceback.
    lambda c: c["history"].update(main={"best_epoch": 1, "val": ["x"]}),
    lambda c: c["history"].update(main=[1]),
    lambda c: c["history"].update(main={"best_epoch": 3, "val": [0.5]}),
    lambda c: c["history"].update(main={"best_epoch": True, "val": [0.5]}),
    lambda c: c["history"].update(main={"best_epoch": 0, "val": [0.5], "val_start": "x"}),
    lambda c: c.update(stage_a=5),
    lambda c: c.update(stage_a={"period": 5, "tasks": 3}),
    lambda c: c.update(versions="x"),
])
def test_incomplete_settings_are_refused_at_load(saved: Path, basin: xr.Dataset, change) -> None:
    # (The saved model, unedited, loads: see the tests above.)
    # These used to load, then fail at the first downscale with a bare KeyError,
    # TypeError or ZeroDivisionError.
    cfg = json.loads((saved / "config.json").read_text())
    change(cfg)
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="config.json"):
        load(saved)


def test_a_history_with_an_overflowed_validation_score_loads(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # train_tasks records a validation score that overflowed (NaN, inf), json writes it as
    # NaN or Infinity: such a fit's folder loads, and info reads it.
    from xmsgl.cli import main

    cfg = json.loads((saved / "config.json").read_text())
    cfg["history"]["main"] = {**cfg["history"]["main"], "val": [float("nan"), float("inf"), 0.5],
                              "best_epoch": 3, "loss": [1.0, 0.9, 0.8]}
    (saved / "config.json").write_text(json.dumps(as_saved_before_digests(cfg)))
    assert load(saved).history["main"]["best_epoch"] == 3
    assert main(["info", str(saved)]) == 0
    assert "best epoch 3 of 3" in capsys.readouterr().out


# ------------------------------------------------------------------- killed save

SAVER = textwrap.dedent(
    """
    import os, sys, time
    import xmsgl

    src, dest = sys.argv[1], sys.argv[2]
    fitted = xmsgl.load(src)
    real_fsync = os.fsync

    def slow_fsync(fd):
        # The weights file is written and flushed; stop before config.json is.
        real_fsync(fd)
        print("started", flush=True)
        time.sleep(60)

    os.fsync = slow_fsync
    fitted.save(dest)
    """
)


def _killed_save(src: Path, dest: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(src), str(dest)], cwd=ROOT, stdout=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_killed_save_leaves_no_half_model(saved: Path, tmp_path: Path, model: Downscaler) -> None:
    fresh = tmp_path / "fresh.xmsgl"
    _killed_save(saved, fresh)
    assert not fresh.exists(), "a killed save left a half model folder at the target"

    # Over an existing model: the previous one stays loadable and unchanged.
    previous = tmp_path / "previous.xmsgl"
    model.save(previous)
    _killed_save(saved, previous)
    assert load(previous).sha256 == model.sha256
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert "fresh.xmsgl" not in visible


# ---------------------------------------------------------------- training guards


def _nan_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return pred.sum() * float("nan")


def test_nan_loss_stops_training(basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train, "masked_rmse", _nan_loss)
    with pytest.raises(TrainingError, match="epoch 1"):
        fit(basin, method="msgl", seed=0, **FAST)


def test_nan_loss_error_names_window_and_task(
    basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train, "masked_rmse", _nan_loss)
    with pytest.raises(TrainingError) as err:
        fit(basin, method="msgl", seed=0, **FAST)
    msg = str(err.value)
    assert "window" in msg
    assert any(task in msg for task in ("'coarse'", "'fine'", "'cross'", "'remap'"))


def test_gradient_clipping_is_available(basin: xr.Dataset) -> None:
    params = inspect.signature(fit).parameters
    name = next((p for p in params if "clip" in p), None)
    assert name is not None
    fitted = fit(basin, method="msgl", seed=0, **{**FAST, name: 1.0})
    assert fitted.config["hyperparameters"].get(name) == 1.0


def test_old_folders_say_what_changed_and_damaged_versions_are_damage(
        basin: xr.Dataset, tmp_path: Path) -> None:
    import warnings

    from xmsgl.baselines import fit_baseline, load_baseline
    from xmsgl.nn.gru import load_gru

    # An msgl model from before the attention spans went on the calendar: its residual
    # head reads them, so it now predicts otherwise (by up to 1.7 degC), said on load.
    model = fit(basin, method="msgl", seed=0, fine_head="residual", **FAST_FIT)
    folder = model.save(tmp_path / "old")
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["hyperparameters"]["fine_head"]
    cfg["created"] = "2026-11-20T10:00:00Z"
    as_saved_before_digests(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(xmsgl.XmsglWarning, match=r"saved on 2026-11-20T10:00:00Z, before the "
                                                r"cross-scale head's attention spans.*refit it"):
        load(folder)
    cfg["created"] = "2026-11-24T10:00:00Z"  # after: read as saved, without a word
    (folder / "config.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmsgl.XmsglWarning)
        load(folder)
    # A version no xmsgl wrote is damage, for the GRU and the baselines as for networks;
    # a newer one asks for an upgrade.
    gru = fit(basin, method="gru", seed=0, epochs=1, window=120, stride=120, progress=False)
    base = fit_baseline(basin, "climatology")
    for saved, loader in ((gru.save(tmp_path / "gru"), load_gru),
                          (base.save(tmp_path / "base"), load_baseline)):
        cfg = json.loads((saved / "config.json").read_text())
        for version, error, text in (("1", DataError, "damaged"), (1.0, DataError, "damaged"),
                                     (None, DataError, "damaged"), (99, ModelMismatchError, "upgrade")):
            cfg["format_version"] = version
            (saved / "config.json").write_text(json.dumps(cfg))
            with pytest.raises(error, match=text):
                loader(saved)


def _edit(folder: Path, change) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))


@pytest.mark.parametrize(("change", "named"), [
    (lambda c: c["targets"].__setitem__("mean", [m + 1 for m in c["targets"]["mean"]]
                                        if isinstance(c["targets"]["mean"], list) else c["targets"]["mean"] + 1),
     r"changed \['targets'\]"),
    (lambda c: c["periods"].__setitem__("test", [["2001-01-01", "2001-01-31"]]), r"changed \['periods'\]"),
    (lambda c: c.__setitem__("note", "mine"), r"added \['note'\]"),
])
def test_a_config_edited_after_saving_is_named_at_load(saved: Path, basin: xr.Dataset, change, named) -> None:
    # A target's mean edited by hand moved every prediction by as much, and loaded
    # without a word (the weights' sha256 does not cover the settings).
    _edit(saved, change)
    with pytest.warns(xmsgl.XmsglWarning, match=rf"config.json' was edited after the model was saved \({named}\)"):
        load(saved)


def test_a_config_saved_and_loaded_as_is_warns_of_nothing(saved: Path, model: Downscaler, tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load(saved)
        resaved = load(again.save(tmp_path / "again"))
    assert resaved.sha256 == again.sha256 == model.sha256
    digests = json.loads((saved / "config.json").read_text())["weights"]["settings_sha256"]
    assert {"targets", "variables", "periods", "graph"} <= set(digests)


def test_edited_configs_of_the_gru_and_the_light_baselines_are_named(basin: xr.Dataset, tmp_path: Path) -> None:
    import warnings

    from xmsgl.baselines import fit_baseline, load_baseline
    from xmsgl.nn.gru import load_gru

    gru = fit(basin, method="gru", seed=0, epochs=1, window=120, stride=120, progress=False)
    for saved, loader in ((gru.save(tmp_path / "gru"), load_gru),
                          (fit_baseline(basin, "climatology").save(tmp_path / "clim"), load_baseline)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loader(saved)
        _edit(saved, lambda c: c.__setitem__("note", "mine"))
        with pytest.warns(xmsgl.XmsglWarning, match=r"edited after the model was saved \(added \['note'\]\)"):
            loader(saved)


def test_config_values_that_break_reading_later_are_refused_at_load(saved: Path, basin: xr.Dataset,
                                                                     tmp_path: Path) -> None:
    # These loaded (or failed in load) with Python's TypeError, OverflowError or
    # ValueError, or loaded and failed at downscale: an input named by a list, an
    # infinite n_common, the GRU's n_common or observed ranges of another kind, a NUL in
    # the weights file's name; the GRU took any method.
    from xmsgl.nn.gru import load_gru

    def edited(folder: Path, name: str, change) -> Path:
        copy = _copy(folder, tmp_path / name)
        _edit(copy, change)
        return copy

    msgl_cases = {
        "list_name": lambda c: c["variables"]["seg_vars"].__setitem__(0, []),
        "inf_common": lambda c: c["variables"].__setitem__("n_common", float("inf")),
        "nul_file": lambda c: c["weights"].__setitem__("file", "\u0000"),
    }
    for name, change in msgl_cases.items():
        with pytest.raises(DataError):
            load(edited(saved, name, change))
    gru = fit(basin, method="gru", seed=0, epochs=1, window=120, stride=120, progress=False)
    gru_dir = gru.save(tmp_path / "gru")
    gru_cases = {
        "gru_common": (lambda c: c["variables"].__setitem__("n_common", None), "variables.n_common is None"),
        "gru_inf": (lambda c: c["variables"].__setitem__("n_common", float("inf")), "variables.n_common is inf"),
        "gru_range": (lambda c: next(iter(c["variables"]["observed_range"].values())).__setitem__(0, "x"),
                      "variables.observed_range is"),
        "gru_method": (lambda c: c.__setitem__("method", "climatology"), "method is 'climatology', not 'gru'"),
        "gru_nul": (lambda c: c["weights"].__setitem__("file", "\u0000"), "missing or cannot be reached"),
    }
    for name, (change, says) in gru_cases.items():
        with pytest.raises(DataError, match=re.escape(says)):
            load_gru(edited(gru_dir, name, change))


def _copy(folder: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, to))


def test_files_that_are_no_files_or_no_json_python_reads_are_typed_errors(
        saved: Path, basin: xr.Dataset, tmp_path: Path) -> None:
    # A FIFO blocked the light baselines' and the GRU's loads for good; JSON nested
    # 100,000 deep or holding a 5,000-digit integer raised Python's RecursionError or
    # ValueError; a .npy saved as arrays.npz a TypeError.
    import numpy as np

    from xmsgl.baselines import fit_baseline, load_baseline
    from xmsgl.nn.gru import load_gru

    clim = fit_baseline(basin, "climatology").save(tmp_path / "clim")
    gru = fit(basin, method="gru", seed=0, epochs=1, window=120, stride=120, progress=False).save(tmp_path / "gru")
    for i, (folder, name) in enumerate([(clim, "arrays.npz"), (clim, "config.json"), (gru, "config.json"),
                                        (saved, "weights.pt")]):
        fifo = _copy(folder, tmp_path / f"fifo{i}")
        (fifo / name).unlink()
        os.mkfifo(fifo / name)
        # The loaders of one format read the file itself (xmsgl.load looks for it first).
        loader = {(clim, "config.json"): load_baseline, (gru, "config.json"): load_gru}.get((folder, name),
                                                                                             xmsgl.load)
        with pytest.raises(DataError, match=rf"{name}' is a FIFO, not a file"):
            loader(fifo)
    for i, text in enumerate(["[" * 100_000 + "]" * 100_000, '{"seed": ' + "9" * 5000 + "}"]):
        for folder in (saved, clim, gru):
            bad = _copy(folder, tmp_path / f"json{i}_{folder.name}")
            (bad / "config.json").write_text(text)
            with pytest.raises(DataError, match="cannot be read as JSON"):
                xmsgl.load(bad)
    npy = _copy(clim, tmp_path / "npy")
    with open(npy / "arrays.npz", "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DataError, match="holds a single ndarray, not named arrays"):
        xmsgl.load(npy)


def test_tampering_that_keeps_the_hashes_in_step_is_still_refused(saved: Path, basin: xr.Dataset,
                                                                  tmp_path: Path) -> None:
    # NaN weights with their sha256 recorded anew predicted NaN everywhere, and a
    # baseline whose arrays' sha256 was taken out of config.json loaded changed arrays.
    import hashlib

    import numpy as np

    from xmsgl.baselines import fit_baseline

    nan = _copy(saved, tmp_path / "nan")
    state = torch.load(nan / "weights.pt", weights_only=True)
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    torch.save(state, nan / "weights.pt")
    _edit(nan, lambda c: c["weights"].update(sha256=hashlib.sha256((nan / "weights.pt").read_bytes()).hexdigest()))
    with pytest.raises(DataError, match=rf"NaN or infinite values in \['{first}'\]"):
        load(nan)
    clim = fit_baseline(basin, "climatology").save(tmp_path / "clim")
    arrays = dict(np.load(clim / "arrays.npz"))
    np.savez(clim / "arrays.npz", **{**arrays, "reach_clim": arrays["reach_clim"] + 5})
    _edit(clim, lambda c: c.pop("arrays_sha256"))
    with pytest.raises(ModelMismatchError, match="lacks the sha256 of arrays.npz that saving records"):
        xmsgl.load(clim)
    # Digests that are no mapping of texts count as edited, not as a folder saved before them.
    odd = _copy(saved, tmp_path / "odd")
    _edit(odd, lambda c: c["weights"].update(settings_sha256="x"))
    with pytest.warns(xmsgl.XmsglWarning, match="edited after the model was saved"):
        load(odd)


def test_sizes_the_weights_do_not_have_are_refused_before_the_network_is_built(saved: Path, basin: xr.Dataset,
                                                                               tmp_path: Path) -> None:
    # Within the size limits, hidden 4096 and 64 attention blocks built a network of
    # about 10 GB before load_state_dict found the weights did not fit.
    big = _copy(saved, tmp_path / "big")
    _edit(big, lambda c: c["hyperparameters"].update(hidden=4096, attn_blocks=64))
    with pytest.raises(ModelMismatchError, match=r"hidden 4096 there, \d+ in the weights, attn_blocks 64 there"):
        load(big)
    gru = fit(basin, method="gru", seed=0, epochs=1, window=120, stride=120, progress=False).save(tmp_path / "gru")
    _edit(gru, lambda c: c["hyperparameters"].update(hidden=16_000))
    with pytest.raises(DataError, match=r"hyperparameters.hidden is 16000 \(at most 4096\)"):
        xmsgl.load(gru)
    # Nor does a fit make one that its load would refuse.
    with pytest.raises(xmsgl.ParameterError, match=r"hidden=4097 is beyond the largest"):
        fit(basin, method="gru", hidden=4097, epochs=1, progress=False)


def test_a_settings_file_that_is_no_file_and_a_dangling_link_are_named(tmp_path: Path) -> None:
    # Both were refused as a folder with "no config.json".
    folder = tmp_path / "m"
    folder.mkdir()
    os.mkfifo(folder / "config.json")
    with pytest.raises(DataError, match=r"the settings file .*config\.json' is a FIFO, not a file"):
        load(folder)
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"gone' is a link to .*nowhere', which does not exist"):
        load(tmp_path / "gone")

"""Weights files of saved networks: plain tensors, checked against their sha256.

Shared by :class:`xmsgl.Downscaler` and the GRU baseline: weights are written with
``torch.save`` of a dict of CPU tensors and read back with
``torch.load(weights_only=True)`` only after their sha256 matches the one recorded
in ``config.json``, so a stale, modified or code-carrying file is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from xmsgl.exceptions import DataError, ModelMismatchError
from xmsgl.io import regular_file, settings_digests, warn_edited_settings, write_model_folder

__all__ = ["CONFIG", "WEIGHTS", "read_weights", "save_network", "state_bytes", "state_sha256", "warn_if_edited"]

#: File names inside a saved-model folder.
CONFIG = "config.json"
WEIGHTS = "weights.pt"


def state_bytes(net: torch.nn.Module) -> bytes:
    """The ``state_dict`` of ``net`` as CPU tensors, serialized by ``torch.save``."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
    return buf.getvalue()


def state_sha256(net: torch.nn.Module) -> str:
    """sha256 of :func:`state_bytes` of ``net``: the identity of a trained network."""
    return hashlib.sha256(state_bytes(net)).hexdigest()


def weights_state(net: torch.nn.Module) -> str:
    """What changes when the weights of ``net`` do: a sha256 of each tensor's name,
    dtype, shape and raw bytes (about a millisecond for an MSGL network).

    Torch's count of in-place changes would be cheaper, but edits through ``p.data``
    (``p.data.add_``, a numpy view, ``p.data = ...`` as
    ``torch.nn.utils.vector_to_parameters`` does) leave it and the tensor's identity
    as they were, and a stale digest would send the lazy path's workers the old
    weights under the old name.
    """
    h = hashlib.sha256()
    for name, t in net.state_dict(keep_vars=True).items():
        flat = t.detach().reshape(-1).contiguous().cpu()
        h.update(f"{name}|{flat.dtype}|{tuple(t.shape)};".encode())
        if flat.numel():
            h.update(memoryview(flat.view(torch.uint8).numpy()))
    return h.hexdigest()


class WeightsDigest:
    """The sha256 of a network's weights (:func:`state_sha256`), kept while they are
    unchanged (:func:`weights_state`) and taken again once they change, so that the
    provenance of outputs follows the weights in use."""

    def __init__(self) -> None:
        self._digest: str | None = None
        self._state: str | None = None

    def remember(self, net: torch.nn.Module, digest: str) -> None:
        """Keep ``digest`` (read from a file, or just written) for ``net`` as it is now."""
        self._digest, self._state = digest, weights_state(net)

    def of(self, net: torch.nn.Module) -> str:
        """The sha256 of ``net``'s weights now."""
        if self._digest is None or self._state != weights_state(net):
            self.remember(net, state_sha256(net))
        assert self._digest is not None
        return self._digest


def model_sha256(weights_sha256: str, config: dict[str, Any]) -> str:
    """sha256 of a model: its weights' sha256 and its settings (``config`` less the
    ``weights``, ``created`` and ``torch_threads`` entries and the dataset's ``history``
    in ``data``, in a canonical JSON form).

    A model saved and loaded again keeps it; an edited ``config.json`` (a target
    mean, a variable, a graph option) changes it, so the provenance recorded with
    every output names what was really used. Two fits that give the same weights
    with the same settings (the same seed on a CPU) have the same sha256: the time
    a model was created is not part of what it is.
    """
    text = json.dumps(_settings(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{weights_sha256}\n{text}".encode()).hexdigest()


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    """What a model's sha256 reads of its ``config``: every entry but ``weights``,
    ``created``, ``torch_threads`` and the dataset's ``history``, through JSON once."""
    # Nor the torch threads the fit ran with: they can change the weights (then the
    # weights' sha256 differs), not what the same weights are.
    settings = {k: v for k, v in config.items() if k not in ("weights", "created", "torch_threads")}
    if isinstance(settings.get("data"), dict):
        # The dataset's history line says when it was built: the same observations
        # (``targets_sha256``) built again are the same data.
        settings["data"] = {k: v for k, v in settings["data"].items() if k != "history"}
    # Through JSON once, so that a fitted model and its reloaded copy agree
    # (tuples become lists, integer keys strings) before the canonical form.
    return json.loads(json.dumps(settings))  # type: ignore[no-any-return]


def save_network(
    path: str | os.PathLike[str], net: torch.nn.Module, config: dict[str, Any],
    overwrite: bool = True, what: str = "model",
) -> tuple[Path, dict[str, Any], str]:
    """Write ``net``'s weights and ``config`` (plus the weights' name and sha256) atomically
    (``overwrite`` and ``what``, the kind of folder: as :func:`xmsgl.io.write_model_folder`).

    Returns the folder written, the config as written and the weights' sha256.
    """
    blob = state_bytes(net)
    digest = hashlib.sha256(blob).hexdigest()
    # With a digest of each settings entry, which a load compares: an edited entry is
    # named there (the weights' sha256 alone does not cover the settings).
    config = {**config, "weights": {"file": WEIGHTS, "sha256": digest,
                                    "settings_sha256": settings_digests(_settings(config))}}
    mine = model_sha256(digest, config)

    def same(old: dict[str, Any]) -> bool:
        # The same model: the same model sha256 (settings and weights; not the time of
        # the fit, nor the dataset's history line).
        w = old.get("weights")
        return isinstance(w, dict) and isinstance(w.get("sha256"), str) and \
            model_sha256(w["sha256"], old) == mine

    folder = write_model_folder(path, {WEIGHTS: blob, CONFIG: json.dumps(config, indent=1).encode()},
                                what=what, overwrite=overwrite, same=same)
    return folder, config, digest


#: The largest weights file a model folder may hold (bytes): the networks xmsgl fits
#: take kilobytes to a few MB (a hidden size of 4,096 about 340 MB).
MAX_WEIGHTS_BYTES = 2**30


def read_weights(
    path: Path, config: dict[str, Any], cfg_file: Path, refetch: str
) -> tuple[dict[str, torch.Tensor], str, Path]:
    """The weights named by ``config["weights"]`` in the folder ``path``.

    Returns the state dict, its sha256 and the weights file. ``refetch`` ends every
    error message (what the user should do).

    Raises
    ------
    DataError
        No ``weights`` entry, a missing file, or a file that is not a dict of
        plain tensors (a pickle of code is refused by ``weights_only``).
    ModelMismatchError
        A file whose sha256 differs from the recorded one.
    """
    weights = config.get("weights")
    if not (isinstance(weights, dict) and isinstance(weights.get("file"), str)
            and isinstance(weights.get("sha256"), str)):
        raise DataError(f"{str(cfg_file)!r} lacks the entry 'weights' with the weights file "
                        f"name and sha256 (got {weights!r}); {refetch}")
    # A bare file name: a config cannot point outside its own folder.
    wfile = regular_file(path / Path(weights["file"]).name, "weights file", refetch)
    try:
        size = wfile.stat().st_size
        if size > MAX_WEIGHTS_BYTES:
            raise DataError(f"the weights file {str(wfile)!r} holds {size:,} bytes, more than the "
                            f"networks xmsgl saves take ({MAX_WEIGHTS_BYTES:,}); {refetch}")
        blob = wfile.read_bytes()
    except (OSError, MemoryError) as err:
        raise DataError(f"the weights file {str(wfile)!r} cannot be read ({type(err).__name__}: {err}); "
                        "check its permissions and size") from err
    digest = hashlib.sha256(blob).hexdigest()
    if digest != weights["sha256"]:
        raise ModelMismatchError(
            f"{str(wfile)!r} does not match {cfg_file.name} (sha256 {digest[:12]}... on disk, "
            f"{weights['sha256'][:12]}... expected): the weights are stale or were "
            f"modified; {refetch}"
        )
    try:
        with warnings.catch_warnings():
            # torch's notes on a pickle protocol it does not write and on a TorchScript
            # archive (to load it another way): the file is judged below.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive",
                                    category=UserWarning)
            state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as err:
        # torch reports a refused or damaged pickle with several exception types
        # (UnpicklingError, RuntimeError, EOFError, ...): all mean an unusable file.
        raise DataError(
            f"the weights file {str(wfile)!r} cannot be read as plain tensors "
            f"({type(err).__name__}: {_what_torch_found(err)}); it may hold code or be "
            f"damaged: {refetch} from a source you trust"
        ) from err
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise DataError(f"the weights file {str(wfile)!r} does not hold a dict of tensors; "
                        f"{refetch}")
    # What xmsgl saves: names, and dense floating-point tensors in memory, each holding
    # its values. A view that repeats one stored number (an expanded tensor) declares
    # more values than the file holds: checking it for NaN would allocate them all.
    odd = [k for k, v in state.items()
           if not isinstance(k, str) or v.layout != torch.strided or v.device.type != "cpu"
           or not v.is_floating_point()
           or v.numel() * v.element_size() > v.untyped_storage().nbytes()]
    if odd:
        shown = ", ".join(repr(k) if not isinstance(k, str) else
                          f"{k!r} ({state[k].dtype}, {str(state[k].layout).replace('torch.', '')}, "
                          f"{state[k].device.type}, {state[k].numel():,} values)" for k in odd[:3])
        raise DataError(f"the weights file {str(wfile)!r} holds entries that are not named, dense, "
                        f"floating-point tensors, each with its own values, as xmsgl saves them: "
                        f"{shown}{' and more' if len(odd) > 3 else ''}; {refetch}")
    # fit refuses a diverged loss, so a saved network's weights are finite: others
    # would make every prediction NaN, silently.
    bad = sorted(k for k, v in state.items() if not bool(torch.isfinite(v).all()))
    if bad:
        raise DataError(f"the weights file {str(wfile)!r} holds NaN or infinite values in {bad[:3]}"
                        f"{' and more' if len(bad) > 3 else ''}; no fit saves such weights: {refetch}")
    return state, digest, wfile


#: Sentences of torch's refusal that are advice, not what it found: to load the file
#: with ``weights_only=False`` or to allow the functions it calls (either runs any code
#: it holds), or to report an issue to torch.
_TORCH_ADVICE = re.compile(r"(\(\d\)\s*)?(Weights only load failed|This file can still be loaded|"
                           r"Alternatively|In PyTorch 2\.6|Re-running|Please use|Please file|"
                           r"Check the documentation|Do it only)")


def _what_torch_found(err: BaseException) -> str:
    """What torch found wrong in a weights file, without its advice on loading the file
    anyway (which would run the code a refused file holds) or its terminal colours;
    other characters a crafted file's names may carry that are not printable are shown
    escaped (``\\x0b``, ``\\u2028``)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).replace("WeightsUnpickler error:", "\n")
    # Advice that quotes the file's names, which may hold anything: taken out whole,
    # by torch's own words around it, before the text is cut into sentences.
    text = re.sub(r"Please use `torch\.serialization.*?if you trust this class/function\.", "", text,
                  flags=re.DOTALL)
    text = re.sub(r"(classes|types) allowlisted via `add_safe_globals`", r"allowed \1", text)
    text = "".join(c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode()
                   for c in text)
    sentences = [t.strip() for part in text.split("\n") for t in re.split(r"(?<=[.!?])\s+", part)]
    found = " ".join(t for t in sentences if t and not _TORCH_ADVICE.match(t))
    if not found:
        return "the file ended early" if isinstance(err, EOFError) else "nothing more said"
    return found if len(found) <= 300 else found[:300].rsplit(" ", 1)[0] + " ..."


def warn_if_edited(config: dict[str, Any], cfg_file: Path, refetch: str) -> None:
    """Warn when ``config`` (read from ``cfg_file``, its weights loaded) differs from the
    settings whose digests its save recorded (:func:`xmsgl.io.warn_edited_settings`);
    called once the network is built, so that a setting that breaks it is its error."""
    weights = config.get("weights")
    recorded = weights.get("settings_sha256") if isinstance(weights, dict) else None
    warn_edited_settings(recorded, _settings(config), cfg_file, refetch)

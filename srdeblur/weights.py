"""Shipped models and checkpoint files: safetensors only (loading can never run code), sha256-checked.

A model is a pair of files in ``weights/``: ``<name>.safetensors`` and ``<name>.json`` (the manifest: the
architecture config that rebuilds the network, the sha256 of the weights, the training recipe and the
metrics measured with ``srdeblur eval``). The folder is found next to the installed package (shipped inside
the wheel as ``srdeblur/weights``) or, in a source checkout, at the repository root — never relative to the
working directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from srdeblur.nets import (DeblurConfig, DeconvConfig, DegradationGate, GateConfig, LapSR, SRConfig, SRNDeblur,
                           USRDeconv)

__all__ = [
    "WeightsError",
    "MODELS",
    "weights_dir",
    "sha256_file",
    "load_model",
    "list_models",
    "read_manifest",
    "save_tensors",
    "load_tensors",
]

# The model zoo: a plain dict, name -> (task, network class, config class).
MODELS: dict[str, tuple[str, type, type]] = {
    "lapsr": ("sr", LapSR, SRConfig),
    "srndeblur": ("deblur", SRNDeblur, DeblurConfig),
    "usrdeconv": ("nonblind", USRDeconv, DeconvConfig),
    "degradationgate": ("srgate", DegradationGate, GateConfig),
}


class WeightsError(RuntimeError):
    """Missing, corrupted or mismatched weights; the message is one line for the user."""


def weights_dir() -> Path:
    """The folder holding the shipped ``*.safetensors`` and manifests (``SRDEBLUR_WEIGHTS`` overrides)."""
    override = os.environ.get("SRDEBLUR_WEIGHTS")
    if override:
        return Path(override)
    package = Path(__file__).resolve().parent
    installed = package / "weights"  # inside a wheel
    if installed.is_dir():
        return installed
    return package.parent / "weights"  # a source checkout / editable install


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(name: str, *, folder: Path | None = None) -> dict[str, Any]:
    """The JSON manifest of model ``name``."""
    path = (folder or weights_dir()) / f"{name}.json"
    if not path.is_file():
        raise WeightsError(f"no weights named {name!r}: {path} is missing")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WeightsError(f"{path}: unreadable manifest ({error})") from None


def list_models(*, folder: Path | None = None) -> list[dict[str, Any]]:
    """The manifests of every shipped weight in ``folder`` (default: the package's), sorted by name."""
    folder = folder or weights_dir()
    manifests = []
    for path in sorted(folder.glob("*.json")):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(manifest, dict) and "sha256" in manifest:
            manifests.append({"name": path.stem, **manifest})
    return manifests


def load_model(name: str, *, folder: Path | None = None, int8: bool = False) -> torch.nn.Module:
    """Build model ``name`` from its manifest and load its sha256-checked safetensors weights (eval mode).

    ``int8``: for an SR network whose manifest stores int8 activation ranges (``"int8"``) and where the x86
    quantized engine exists, an :class:`srdeblur.int8.Int8LapSR`; otherwise (no ranges, another network) the
    float model, as without it."""
    folder = folder or weights_dir()
    manifest = read_manifest(name, folder=folder)
    arch = manifest.get("architecture", name)
    if arch not in MODELS:
        raise WeightsError(f"{name}: unknown architecture {arch!r} in its manifest")
    _, network, config_class = MODELS[arch]
    try:
        path = folder / manifest["file"]
        config = config_class(**manifest["config"])
    except (KeyError, TypeError) as error:
        raise WeightsError(f"{name}: malformed manifest ({type(error).__name__}: {error})") from None
    if not path.is_file():
        raise WeightsError(f"{name}: weights file {path} is missing")
    actual = sha256_file(path)
    if actual != manifest.get("sha256"):
        raise WeightsError(f"{name}: {path.name} is corrupted (sha256 {actual[:12]}… does not match the manifest)")
    model = network(config)
    try:
        state = load_file(str(path))
        model.load_state_dict(state)
    except Exception as error:  # safetensors raises several types for a damaged file
        raise WeightsError(f"{name}: cannot load {path.name} ({error})") from None
    # channels_last: measured 1.7x (convolutions) to 3.5x (transposed convolutions) faster on CPU.
    model = model.to(memory_format=torch.channels_last).eval()
    ranges = manifest.get("int8", {}).get("activation_ranges") if isinstance(manifest.get("int8"), dict) else None
    if int8 and ranges and isinstance(model, LapSR):
        from srdeblur import int8 as quantization

        if quantization.available():
            try:
                return quantization.quantize(model, ranges)
            except ValueError as error:
                raise WeightsError(f"{name}: malformed int8 ranges in its manifest ({error})") from None
    return model


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], *, metadata: dict[str, str] | None = None) -> None:
    """Write tensors to a safetensors file atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(temporary), metadata=metadata)
    os.chmod(temporary, 0o644)  # safetensors creates 0600; shipped weights must be world-readable
    os.replace(temporary, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file (never unpickles)."""
    return load_file(str(path))

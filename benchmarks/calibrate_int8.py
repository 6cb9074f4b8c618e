"""Measure the int8 activation ranges of the shipped SR networks on training images and store them in their manifests.

    python benchmarks/calibrate_int8.py [--names lapsr lapsr-real] [--images 40] [--weights weights]

For each network: the centred 192-px crops of every 7th training image (the 291 of ``../shared/data/train``,
the held-out validation images excluded), shrunk x2 and x4 with MATLAB-style bicubic (``lapsr``) or, for
``lapsr-real``, half of them by the ``strong`` and half by the ``mild`` realistic preset (seeded) and a quarter
clean, each run through the float network at pyramid depths 1, 2 and 3 with min/max observers on every activation
of the feature path (:func:`srdeblur.int8.calibrate`). The ranges, widened by ``int8.RANGE_MARGIN``, go into
``<name>.json`` under ``"int8"``; the weights file and its sha256 are untouched. Never the benchmarks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from srdeblur import int8
from srdeblur.degrade import degradation_generator, quantize_8bit, realistic_downscale
from srdeblur.resize import imresize
from srdeblur.training_data import load_training_images
from srdeblur.weights import load_model, weights_dir

ROOT = Path(__file__).resolve().parents[1]
CROP = 192


def lr_inputs(images: list[torch.Tensor], *, realistic: bool) -> list[torch.Tensor]:
    """x2 and x4 LR versions of the centred crops (1, 3, h, w) in [0, 1], 8-bit."""
    inputs = []
    for index, pixels in enumerate(images):
        height, width = pixels.shape[-2:]
        top, left = max(0, (height - CROP) // 2), max(0, (width - CROP) // 2)
        hr = pixels[None, :, top : top + CROP, left : left + CROP].float() / 255
        hr = hr[..., : hr.shape[-2] // 4 * 4, : hr.shape[-1] // 4 * 4]
        for scale in (2, 4):
            if realistic and index % 4 != 3:
                preset = "strong" if index % 2 == 0 else "mild"
                generator = degradation_generator(7, 10 * index + scale)
                inputs.append(realistic_downscale(hr, scale, preset, generator=generator))
            else:
                inputs.append(quantize_8bit(imresize(hr, scale=1 / scale)))
    return inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="+", default=["lapsr", "lapsr-real"])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train"))
    parser.add_argument("--images", type=int, default=40, help="at most this many training images (every 7th)")
    parser.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = args.weights or weights_dir()
    train, _ = load_training_images((args.data,), val_fraction=29)
    images = train[::7][: args.images]
    for name in args.names:
        model = load_model(name, folder=folder)
        inputs = lr_inputs(images, realistic=name != "lapsr")
        ranges = int8.calibrate(model, inputs, levels=(1, 2, 3))
        path = folder / f"{name}.json"
        manifest = json.loads(path.read_text())
        manifest["int8"] = {
            "engine": int8.ENGINE,
            "activation_ranges": ranges,
            "range_margin": int8.RANGE_MARGIN,
            "calibration": f"benchmarks/calibrate_int8.py: {len(inputs)} LR inputs (x2 and x4) from {len(images)} "
                           f"training images, centred {CROP}-px crops, "
                           + ("3/4 realistic (strong, mild), 1/4 bicubic" if name != "lapsr" else "MATLAB bicubic")
                           + ", pyramid depths 1-3",
        }
        text = path.read_text()
        second = text.splitlines()[1] if text.count("\n") > 1 else "  "
        indent = len(second) - len(second.lstrip()) or 2  # keep the manifest's own layout
        path.write_text(json.dumps(manifest, indent=indent) + "\n")
        print(f"{name}: {len(ranges)} activation ranges from {len(inputs)} inputs -> {path}")


if __name__ == "__main__":
    main()

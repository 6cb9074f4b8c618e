"""srdeblur: learned super-resolution and blind deblurring on the CPU.

Importing the package is cheap: torch and friends are imported by the submodules that need them, so
``srdeblur --help`` starts instantly. The notebook API is loaded on first use (tensors in, tensors out)::

    import srdeblur
    image = srdeblur.read_image("samples/chelsea.png").pixels       # (1, 3, H, W) float32 in [0, 1]
    big = srdeblur.upscale(image, scale=4, method="bicubic")         # srdeblur.inference.upscale
    sharp = srdeblur.deblur(image, method="net")                      # srdeblur.inference.deblur
    result = srdeblur.evaluate("set5", scale=4, methods=("bicubic", "net"))   # srdeblur.evaluation.evaluate
    strip = srdeblur.compare([big, big], labels=["a", "b"]).strip     # srdeblur.visual.compare
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> (module, attribute); imported on first access (PEP 562), so `import srdeblur` stays free of torch.
_LAZY = {
    "upscale": ("srdeblur.inference", "upscale"),
    "deblur": ("srdeblur.inference", "deblur"),
    "evaluate": ("srdeblur.evaluation", "evaluate"),
    "read_image": ("srdeblur.io", "read_image"),
    "write_image": ("srdeblur.io", "write_image"),
    "compare": ("srdeblur.visual", "compare"),
    "evaluation_report": ("srdeblur.visual", "evaluation_report"),
}

__all__ = ["__version__", "compare", "deblur", "evaluate", "evaluation_report", "read_image", "upscale",
           "write_image"]


def __getattr__(name: str):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'srdeblur' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

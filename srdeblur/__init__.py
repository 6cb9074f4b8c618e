"""srdeblur: learned super-resolution and blind deblurring on the CPU.

Importing the package is cheap: torch and friends are imported by the submodules that need them, so
``srdeblur --help`` starts instantly.
"""

__version__ = "0.1.0"

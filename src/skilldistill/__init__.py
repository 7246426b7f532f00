"""skilldistill: skill-aware data selection and fine-tuning for reasoning distillation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("skilldistill")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

"""trainmedic: a medic for PyTorch training."""

__version__ = "0.1.0"

from trainmedic.findings import Finding  # noqa: E402

__all__ = ["Finding", "__version__"]

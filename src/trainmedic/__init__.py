"""trainmedic: a medic for PyTorch training."""

__version__ = "0.1.0"

from trainmedic.config import Thresholds  # noqa: E402
from trainmedic.findings import Finding  # noqa: E402
from trainmedic.medic import Medic  # noqa: E402

__all__ = ["Finding", "Medic", "Thresholds", "__version__"]
from trainmedic.instrument import log  # noqa: E402  (trainmedic run's one-liner; a no-op otherwise)

__all__ += ["log"]
from trainmedic.heal.forensics import QuarantineSampler, WithIndex  # noqa: E402
from trainmedic.lr_find import lr_find  # noqa: E402
from trainmedic.preflight import preflight  # noqa: E402

__all__ += ["QuarantineSampler", "WithIndex", "lr_find", "preflight"]

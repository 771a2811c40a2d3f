"""trainmedic: a medic for PyTorch training.

``Medic`` watches (and in heal mode repairs) a hand-written loop; ``preflight`` checks the wiring before
training; ``lr_find`` runs a learning-rate range test; ``log`` passes a validation loss to
``trainmedic run`` (a no-op otherwise); ``WithIndex`` and ``QuarantineSampler`` let forensics name and
skip dirty rows by dataset index.
"""

__version__ = "0.1.0"

from trainmedic.config import Thresholds  # noqa: E402
from trainmedic.findings import Finding  # noqa: E402
from trainmedic.heal.forensics import QuarantineSampler, WithIndex  # noqa: E402
from trainmedic.instrument import log  # noqa: E402
from trainmedic.lr_find import lr_find  # noqa: E402
from trainmedic.medic import Medic  # noqa: E402
from trainmedic.preflight import preflight  # noqa: E402

__all__ = ["Finding", "Medic", "QuarantineSampler", "Thresholds", "WithIndex", "__version__", "log", "lr_find",
           "preflight"]

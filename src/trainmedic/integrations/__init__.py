"""Callbacks for training frameworks, on the same engine as ``Medic`` and ``trainmedic run``.

* :mod:`trainmedic.integrations.lightning` -- ``MedicCallback`` for PyTorch Lightning
  (``pip install 'trainmedic[lightning]'``);
* :mod:`trainmedic.integrations.transformers` -- ``MedicCallback`` for the Hugging Face ``Trainer``
  (``pip install 'trainmedic[transformers]'``).
"""

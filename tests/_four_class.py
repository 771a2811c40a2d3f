"""The 4-class MLP task the rate-audit tests train (tests/test_rate_audit.py, tests/test_rate_audit_schedule.py):
sklearn's make_classification, 1,024 training rows (32 steps of 32 an epoch) and 512 validation rows."""

from __future__ import annotations

import torch
from sklearn.datasets import make_classification
from torch import nn


def _data():
    x, y = make_classification(n_samples=1536, n_features=20, n_informative=12, n_redundant=4, n_classes=4,
                               n_clusters_per_class=3, flip_y=0.03, class_sep=1.5, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    return x[:1024], y[:1024], x[1024:], y[1024:]


DATA = _data()


def mlp(dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, 128), nn.ReLU(),
                         nn.Linear(128, 4))

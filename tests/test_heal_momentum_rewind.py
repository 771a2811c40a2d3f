"""SGD with momentum started far too high: heal continues from the probe ramp's lowest loss (issue 12).

From the first steps the probe is the only training the restart gets: its ramp climbs from 1/1000 of the
failed rate, and for SGD with momentum the loss stays at its first level until close to the valley. The
copy at the chosen rate (a decade below the valley) holds none of that training, and the restored snapshot
plus a 50-step warmup spends a large share of a short run getting back there. So for SGD with momentum, after
a clear valley, heal continues from the ramp's copy at the lowest loss, at the chosen rate, with no warmup
(``Policy._rewind_rate``; ``probe_rewind_best``). A 4-class MLP with SGD (momentum 0.9) at 3.0, where 0.01-0.03
train well, on three seeds: the continuation is the copy bit for bit, it runs at the chosen rate from its first
step, and it ends below the restored-snapshot-and-warmup run (``probe_rewind_best=False``) on every seed.
"""

from __future__ import annotations

import pytest
import torch
from test_heal_probe import _classes, actions, train
from torch.nn import functional as F


def sgdm(lr):
    return lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sgd_momentum_continues_from_the_probe_ramps_lowest_loss(seed):
    data = _classes()
    seen = {}

    def record(t, model, medic):
        seen[t] = {k: v.clone() for k, v in model.state_dict().items()}

    medic, vals, lrs, _ = train(data, sgdm(3.0), F.cross_entropy, mode="heal", epochs=6, seed=seed,
                                on_step=record)
    rb, probe = actions(medic, "rollback"), actions(medic, "probe")
    assert rb[0]["to_step"] == 0 and len(probe) == 1
    p = probe[0]
    assert p["rule"] == "minimum/10" and p["warmup_steps"] == 0, p
    assert rb[0]["step"] < p["rewound_to"] < p["step"] and "lowest loss" in p["rewound_why"], p
    # the copy was taken along the ramp above the chosen rate (where the probe had trained), not at it
    assert lrs[p["rewound_to"]] > p["lr_after"]
    for k, v in seen[p["rewound_to"]].items():  # the continuation starts from that copy, bit for bit
        assert torch.equal(seen[p["step"] + 1][k], v), k
    assert all(lr == pytest.approx(p["lr_after"]) for lr in lrs[p["step"] + 1:])  # at the chosen rate, no warmup
    restored, before, _, _ = train(data, sgdm(3.0), F.cross_entropy, mode="heal", epochs=6, seed=seed,
                                   thresholds={"probe_rewind_best": False})
    q = actions(restored, "probe")[0]
    assert "rewound_to" not in q and q["warmup_steps"] == 50 and q["lr_after"] == p["lr_after"]
    assert vals[1] < before[1] and vals[-1] < before[-1], (vals, before)


def test_plain_sgd_and_adam_are_unchanged_by_the_momentum_rewind():
    """The switch only touches SGD with momentum: plain SGD keeps its rewind to the chosen rate, Adam its
    restored snapshot and warmup, bit for bit whatever ``probe_rewind_best`` says."""
    data = _classes()
    for make in (lambda p: torch.optim.SGD(p, lr=3.0), lambda p: torch.optim.Adam(p, lr=0.3)):
        _, on, _, _ = train(data, make, F.cross_entropy, mode="heal", epochs=3)
        _, off, _, _ = train(data, make, F.cross_entropy, mode="heal", epochs=3,
                             thresholds={"probe_rewind_best": False})
        assert on == off

"""Adversarial training is a game, not a loss to minimise (issue 11).

A small GAN on a 1-D Gaussian whose discriminator takes three steps per generator step: each loss rises
and falls against the other, and the fixed-objective curve rules (before issue 11) reported TM305
divergence on both players of this balanced run. Now the players are recognised (several optimizers
stepping in turn) and the curve-shape rules stay silent; heal rolls neither back. Two optimizers used one
after the other are not players: a diverging second phase is still TM305.
"""

from __future__ import annotations

import torch
from torch import nn

from trainmedic import Medic

CURVE_RULES = {"TM305", "TM306", "TM307", "TM308", "TM309", "TM317", "TM319"}


def gan(mode: str = "watch", steps: int = 800) -> tuple[Medic, Medic]:
    mg, md = gan_without_close(mode, steps)
    mg.close()
    md.close()
    return mg, md


def gan_without_close(mode: str = "watch", steps: int = 800) -> tuple[Medic, Medic]:
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
    D = nn.Sequential(nn.Linear(1, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
    og = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), lr=5e-3, betas=(0.5, 0.999))
    mg, md = Medic(G, og, mode=mode, console=False), Medic(D, od, mode=mode, console=False)
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)
    for _ in range(steps):
        for _ in range(3):
            real = 3 + 0.5 * torch.randn(64, 1)
            d_loss = bce(D(real), ones) + bce(D(G(torch.randn(64, 4)).detach()), zeros)
            od.zero_grad()
            d_loss.backward()
            md.step(d_loss)
        g_loss = bce(D(G(torch.randn(64, 4))), ones)
        og.zero_grad()
        g_loss.backward()
        mg.step(g_loss)
    return mg, md


def test_players_of_a_game_get_no_curve_findings_and_no_rollback():
    for mode in ("watch", "heal"):
        mg, md = gan(mode)
        for medic in (mg, md):
            assert medic.monitor.players == 2
            assert not CURVE_RULES & {f.code for f in medic.findings}, [(f.code, f.step) for f in medic.findings]
            # the discriminator's raw logits sit in [0, 1] at initialisation: not a sigmoid applied twice
            assert "TM202" not in {f.code for f in medic.findings}
            assert not [e for e in medic.events if e["type"] == "action" and e.get("action") == "rollback"]
    with torch.no_grad():  # the run is balanced: generated samples sit near the real mean 3
        assert abs(float(mg.model(torch.randn(2000, 4)).mean()) - 3.0) < 0.5


def test_optimizers_used_one_after_the_other_are_not_players():
    torch.manual_seed(0)
    x = torch.randn(2000, 10)
    y = x[:, :3].sum(1, keepdim=True) * 3
    found = []
    for lr in (0.01, 1.0):
        model = nn.Sequential(nn.Linear(10, 64), nn.Tanh(), nn.Linear(64, 1))
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        medic = Medic(model, opt, console=False)
        for _ in range(100):
            idx = torch.randint(0, 2000, (32,))
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
        medic.close()
        found.append({f.code for f in medic.findings})
    assert "TM305" not in found[0] and "TM305" in found[1], found


def test_a_run_started_after_a_game_is_judged_from_its_first_steps():
    """The game's two optimizers alternated in the process's recent steps and were never closed; a single
    run started next is a loss to minimise from its first step (once, a process's test history made the
    first steps of a later heal run look like a game and delayed its judgement)."""
    still_open = gan_without_close(steps=8)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 64), nn.Tanh(), nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    medic = Medic(model, opt, console=False)
    x = torch.randn(256, 10)
    seen = []
    for _ in range(6):
        loss = nn.functional.mse_loss(model(x), x[:, :1])
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
        seen.append(medic.monitor.players)
    medic.close()
    assert seen == [1] * 6
    assert all(m.monitor.players == 2 for m in still_open)  # the game itself was one

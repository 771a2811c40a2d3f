"""TM201 for `F.gaussian_nll_loss` / `nn.GaussianNLLLoss` under Medic with `loss_fn=` (pre-flight's replay).

A heteroscedastic regressor returns a mean and a variance. Forgetting to squeeze them makes the loss compare a
(B, 1) mean with a (B,) target: a (B, B) loss. `trainmedic run` found it from the autograd graph; Medic with
`loss_fn=` relies on pre-flight's replay, which did not treat this loss as one comparing prediction and
target (benchmarks/fresh3 gaussnll_hetero: the fault missed under Medic)."""

import torch

from trainmedic import Medic


class MeanVar(torch.nn.Module):
    def __init__(self, squeeze: bool) -> None:
        super().__init__()
        self.body, self.mu, self.var = torch.nn.Linear(5, 16), torch.nn.Linear(16, 1), torch.nn.Linear(16, 1)
        self.squeeze = squeeze

    def forward(self, x):
        h = torch.relu(self.body(x))
        mu, var = self.mu(h), torch.nn.functional.softplus(self.var(h)) + 1e-3
        return (mu.squeeze(-1), var.squeeze(-1)) if self.squeeze else (mu, var)


def _findings(squeeze: bool):
    torch.manual_seed(0)
    net, crit = MeanVar(squeeze), torch.nn.GaussianNLLLoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(64, 5)
    y = x[:, 0] + 0.1 * torch.randn(64)
    medic = Medic(net, opt, console=False, loss_fn=lambda out, t: crit(out[0], t, out[1]))
    for _ in range(3):
        out = net(x)
        loss = crit(out[0], y, out[1])
        opt.zero_grad()
        loss.backward()
        medic.step(loss, batch=(x, y))
    return medic.findings


def test_an_unsqueezed_mean_against_a_flat_target_is_a_broadcast_trap():
    found = [f for f in _findings(False) if f.code == "TM201"]
    assert len(found) == 1 and found[0].step == 0
    assert tuple(found[0].evidence["prediction_shape"]) == (64, 1)
    assert "gaussian_nll_loss" in found[0].message
    assert not [f for f in _findings(True) if f.severity in ("warning", "error")]

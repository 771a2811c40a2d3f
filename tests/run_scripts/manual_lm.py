"""A tiny word-level language model trained the way PyTorch's word_language_model example trains it:
no optimizer object, `model.zero_grad()`, `loss.backward()`, `clip_grad_norm_`, then
`p.data.add_(p.grad, alpha=-lr)` for each parameter; evaluation under torch.no_grad(); lr /= 4 when the
validation loss does not improve.

`--no-zero-grad` leaves out `model.zero_grad()` (gradients pile up across steps);
`--nan-at N` puts a NaN into the hidden state at step N (its loss is NaN).
"""

import argparse

import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--no-zero-grad", action="store_true")
p.add_argument("--nan-at", type=int, default=-1)
args = p.parse_args()

torch.manual_seed(0)
torch.set_num_threads(1)
ntokens, bptt, batch = 20, 8, 8
# A corpus with structure: each token is mostly followed by (token * 3 + 1) % ntokens.
seq = [0]
g = torch.Generator().manual_seed(1)
for _ in range(3000):
    nxt = (seq[-1] * 3 + 1) % ntokens if torch.rand((), generator=g) < 0.8 else int(torch.randint(ntokens, (), generator=g))
    seq.append(nxt)
data = torch.tensor(seq)
train_data = data[:2400].view(batch, -1).t().contiguous()
val_data = data[2400:3000].view(batch, -1).t().contiguous()


class RNNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(ntokens, 16)
        self.rnn = nn.LSTM(16, 32)
        self.decoder = nn.Linear(32, ntokens)

    def forward(self, x, hidden):
        out, hidden = self.rnn(self.encoder(x), hidden)
        return torch.log_softmax(self.decoder(out), dim=-1).view(-1, ntokens), hidden

    def init_hidden(self, bsz):
        return (torch.zeros(1, bsz, 32), torch.zeros(1, bsz, 32))


def repackage_hidden(h):
    return tuple(v.detach() for v in h)


def get_batch(source, i):
    n = min(bptt, len(source) - 1 - i)
    return source[i:i + n], source[i + 1:i + 1 + n].reshape(-1)


model = RNNModel()
criterion = nn.NLLLoss()
lr = 2.0
step = 0


def evaluate(source):
    model.eval()
    total, hidden = 0.0, model.init_hidden(batch)
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, bptt):
            x, y = get_batch(source, i)
            out, hidden = model(x, hidden)
            total += len(x) * criterion(out, y).item()
    return total / (len(source) - 1)


best = None
for epoch in range(args.epochs):
    model.train()
    hidden = model.init_hidden(batch)
    for i in range(0, train_data.size(0) - 1, bptt):
        x, y = get_batch(train_data, i)
        if not args.no_zero_grad:
            model.zero_grad()
        hidden = repackage_hidden(hidden)
        if step == args.nan_at:
            hidden[0][0, 0, 0] = float("nan")
        out, hidden = model(x, hidden)
        loss = criterion(out, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        for p_ in model.parameters():
            p_.data.add_(p_.grad, alpha=-lr)
        step += 1
    val = evaluate(val_data)
    print(f"epoch {epoch} steps {step} train {loss.item():.3f} val {val:.3f} lr {lr}")
    if best is None or val < best:
        best = val
    else:
        lr /= 4.0

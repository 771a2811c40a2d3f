"""Knowledge distillation on the 8x8 digits: a wide teacher, then a narrow student trained on the
teacher's softened outputs (KL divergence at temperature 4) plus the hard labels.

Two models and two optimizers (SGD for the teacher, Adam for the student), a DataLoader, the student
validated every epoch; the metric is the student's validation error rate.
"""

import argparse
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

T = 4.0
ALPHA = 0.7


def mlp(width):
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def error_rate(model, x, y):
    model.eval()
    with torch.no_grad():
        err = (model(x).argmax(1) != y).float().mean().item()
    model.train()
    return err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    X_tr, X_va, y_tr, y_va = train_test_split(X, d.target, test_size=0.3, random_state=args.seed)
    X_tr, X_va = torch.from_numpy(X_tr), torch.from_numpy(X_va)
    y_tr, y_va = torch.from_numpy(y_tr).long(), torch.from_numpy(y_va).long()
    loader = DataLoader(TensorDataset(X_tr, y_tr), batch_size=32, shuffle=True)

    teacher = mlp(256)
    t_opt = torch.optim.SGD(teacher.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(6):
        for xb, yb in loader:
            t_opt.zero_grad()
            F.cross_entropy(teacher(xb), yb).backward()
            t_opt.step()
        print(f"teacher epoch {epoch} done")
    print(f"teacher error {error_rate(teacher, X_va, y_va):.4f}")

    teacher.eval()
    student = mlp(12)
    s_opt = torch.optim.Adam(student.parameters(), lr=5e-3)
    for epoch in range(10):
        for xb, yb in loader:
            with torch.no_grad():
                t_logits = teacher(xb)
            s_logits = student(xb)
            soft = F.kl_div(F.log_softmax(s_logits / T, dim=1), F.softmax(t_logits / T, dim=1),
                            reduction="batchmean") * T * T
            hard = F.cross_entropy(s_logits, yb)
            loss = ALPHA * soft + (1 - ALPHA) * hard
            s_opt.zero_grad()
            loss.backward()
            s_opt.step()
        with torch.no_grad():
            val_loss = F.cross_entropy(student(X_va), y_va).item()
        print(f"student epoch {epoch}: loss {loss.item():.4f} val_loss {val_loss:.4f}")

    print("FINAL " + json.dumps({"metric": "student_val_error", "value": error_rate(student, X_va, y_va)}))


if __name__ == "__main__":
    main()

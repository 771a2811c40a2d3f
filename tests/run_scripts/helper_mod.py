"""Imported by features.py from the script's own folder."""

import torch


class Squares(torch.utils.data.Dataset):
    def __init__(self, n):
        self.x = torch.linspace(-1, 1, n).unsqueeze(1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 3 * self.x[i] ** 2

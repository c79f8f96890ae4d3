"""The anchor: a faithful re-implementation of tuomaso/train_mnist_fast, notebook 8_Final_00s76
(MIT licence), the best-known public time to 99% MNIST test accuracy (0.76 s on a laptop GPU).

What it does, as in the notebook:
  - the 60,000 training images, normalised ((x / 255 - 0.1307) / 0.3081), shuffled ONCE
    (its data_saver.py shuffles with a DataLoader), held on the device as float32;
  - Net: conv 1->24 5x5, max-pool 2, ReLU, conv 24->32 3x3, max-pool 2, ReLU, flatten (800),
    linear 800->256, ReLU, linear 256->10, log_softmax; NLL loss (215,010 parameters);
  - Adam at lr 1e-2 with betas (0.7, 0.9); OneCycleLR(max_lr=1e-2, total_steps=235,
    cycle_momentum=False) with PyTorch's defaults otherwise (30% warm-up, cosine, div 25);
  - one epoch at batch 256, the batches taken in order from the pre-shuffled data; fp32.
The only additions are for measuring: the seed, and `observe(step, seconds, model)` every
`every` steps with the clock stopped, as digitrec's `train()` offers (benchmarks/speed.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from _common import clock


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 5, 1)
        self.conv2 = nn.Conv2d(24, 32, 3, 1)
        self.fc1 = nn.Linear(800, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.log_softmax(self.fc2(x), dim=1)


def prepare(train_x: torch.Tensor, train_y: torch.Tensor, device: str, seed: int):
    """uint8 (N, 28, 28) images -> normalised float32 (N, 1, 28, 28) on the device, shuffled once."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train_x), generator=g)
    x = ((train_x[perm].float() / 255.0 - 0.1307) / 0.3081).unsqueeze(1).to(device)
    return x, train_y[perm].to(device)


def train_anchor(train_x: torch.Tensor, train_y: torch.Tensor, device: str = "cpu", seed: int = 0,
                 observe=None, every: int = 10, batch_size: int = 256, lr: float = 1e-2, epochs: float = 1) -> dict:
    """One run of the anchor recipe; returns its training seconds (observation off the clock)."""
    x, y = prepare(train_x, train_y, device, seed)
    torch.manual_seed(seed)
    model = Net().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.7, 0.9))
    batches = (len(x) - 1) // batch_size + 1
    total = int(batches * epochs)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, cycle_momentum=False)
    model.train()
    t0 = clock(device)
    seconds = 0.0
    for step in range(1, total + 1):
        i = (step - 1) % batches
        data, target = x[batch_size * i : batch_size * (i + 1)], y[batch_size * i : batch_size * (i + 1)]
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if observe is not None and (step % every == 0 or step == total):
            seconds += clock(device) - t0
            observe(step, seconds, model)
            model.train()
            t0 = clock(device)
    seconds += clock(device) - t0
    return {"train_seconds": seconds, "steps": total, "model": model}

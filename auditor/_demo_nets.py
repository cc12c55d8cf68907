"""The demo's small networks, defined at module level so TorchScript compiles each class once per process
(classes defined inside a function share a qualified name across calls, which TorchScript's cache confuses)."""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """A small CNN for 1 x 8 x 8 digits that scales its inputs (0..``scale``) itself."""

    def __init__(self, scale: float = 16.0) -> None:
        super().__init__()
        self.scale = scale
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 64), nn.ReLU(),
        )
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x / self.scale))

"""The projection head n(.) of Gazda et al. 2021, Table I.

global average pooling (done by the backbone) -> Dense 2048 with bias ->
BatchNorm + ReLU -> Dense 128 without bias. Thrown away after pretraining.
"""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Sequential):
    def __init__(self, in_features: int, hidden_features: int = 2048, out_features: int = 128):
        super().__init__(
            nn.Linear(in_features, hidden_features, bias=True),
            nn.BatchNorm1d(hidden_features),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_features, out_features, bias=False),
        )
        self.in_features = in_features
        self.hidden_features = hidden_features
        self.out_features = out_features

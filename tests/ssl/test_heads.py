import torch
from torch import nn

from cxrssl.ssl.heads import ProjectionHead


def test_table_one_layers_and_shapes():
    head = ProjectionHead(2048)
    first, norm, relu, last = head
    assert isinstance(first, nn.Linear) and first.weight.shape == (2048, 2048) and first.bias is not None
    assert isinstance(norm, nn.BatchNorm1d) and norm.num_features == 2048
    assert isinstance(relu, nn.ReLU)
    assert isinstance(last, nn.Linear) and last.weight.shape == (128, 2048) and last.bias is None
    assert head(torch.randn(4, 2048)).shape == (4, 128)


def test_sizes_are_configurable():
    head = ProjectionHead(512, hidden_features=64, out_features=16)
    assert head(torch.randn(3, 512)).shape == (3, 16)

"""cxrssl: self-supervised pretraining on chest X-rays and honest evaluation.

The method follows Gazda et al., "Self-supervised deep convolutional neural network
for chest X-ray classification", IEEE Access 2021 (arXiv 2103.03055).
"""

__version__ = "0.1.0"

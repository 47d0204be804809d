"""MoCo v2 (He et al. 2020; Chen, Fan, Girshick & He 2020): a momentum key encoder and
a queue of negatives, so the number of negatives does not depend on the batch size.

Queries come from the online backbone + MLP head, keys from their momentum copies;
each query's positive is the key of the other view of its image and its negatives
are the queue (InfoNCE, computed by the tested NT-Xent code with a memory bank). The
loss is symmetrised (both views serve as queries), which uses every forward pass of
a short CPU budget twice; the keys of both views then enter the queue, oldest out.

Defaults, for radiograph pools of a few thousand films and short runs:

- temperature 0.2, MoCo v2's;
- momentum 0.99 rather than MoCo's 0.999: 0.999 makes the key encoder an average
  over roughly the last 1,000 steps, which is a third of a 30-epoch run on 5,600
  films at batch 64 (87 steps per epoch); 0.99 averages over about one epoch;
- queue of 4,096 keys (65,536 in MoCo for ImageNet's 1.28 M images): a queue must
  hold fewer keys than an epoch makes (2 per image), or an image meets its own stale
  key as a negative. 4,096 keys are the last 32 steps at batch 64, under half an
  epoch of a 5,000-film pool; ``check_images`` refuses a pool too small for the queue.

Under ``torchrun`` the keys of every process are gathered, in rank order, before they
enter the queue, so every process holds the same queue. BatchNorm is synchronised
(SyncBN, as for SimCLR) instead of MoCo's shuffle-BN: with statistics over the whole
global batch, a query and its key no longer share the few-image statistics of one
GPU that shuffle-BN was invented to hide, and the multi-process run equals the
one-process run (tested).

Multi-crop (``small_crops``): small views are queries only, each against the keys of
both full-size views (Caron et al. 2020's scheme); the loss is the mean over every
(query, key) pair, so with no small view it is the symmetrised loss above.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxrssl.distributed import differentiable_all_gather
from cxrssl.models import DEFAULT_ARCH
from cxrssl.ssl.losses import nt_xent_loss
from cxrssl.ssl.methods.base import Method, Setting


class MoCo(Method):
    name = "moco"
    title = "MoCo v2"
    settings = {
        "temperature": Setting(0.2, "positive", "softmax temperature (MoCo v2's 0.2)"),
        "momentum": Setting(0.99, "unit", "EMA coefficient of the key encoder"),
        "queue_size": Setting(4096, "count", "negatives kept in the queue"),
    }
    multi_crop = True

    def __init__(
        self,
        arch: str = DEFAULT_ARCH,
        hidden_features: int = 2048,
        out_features: int = 128,
        temperature: float = 0.2,
        momentum: float = 0.99,
        queue_size: int = 4096,
        gather_distributed: bool = False,
    ):
        super().__init__(arch, hidden_features, out_features, gather_distributed)
        self.temperature, self.momentum, self.queue_size = temperature, momentum, queue_size
        self.backbone_key = self.frozen_copy(self.backbone)
        self.head_key = self.frozen_copy(self.head)
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, out_features, generator=generator), dim=1))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def momentum_pairs(self):
        return [(self.backbone, self.backbone_key), (self.head, self.head_key)]

    def momentum_at(self, progress: float) -> float:
        return self.momentum

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, *small: torch.Tensor) -> torch.Tensor:
        q1, q2 = self.head(self.backbone(torch.cat([view1, view2], dim=0))).chunk(2, dim=0)
        with torch.no_grad():
            k1, k2 = self.head_key(self.backbone_key(torch.cat([view1, view2], dim=0))).chunk(2, dim=0)
        negatives = self.queue.clone()  # the queue changes below; the loss keeps this step's copy
        # Each full-size query against the other view's key; each small crop's query against both keys.
        pairs = [(q1, k2), (q2, k1)]
        if small:
            for q in self.head(self.backbone(torch.cat(small, dim=0))).chunk(len(small), dim=0):
                pairs += [(q, k1), (q, k2)]
        loss = sum(nt_xent_loss(q, k, self.temperature, negatives=negatives) for q, k in pairs) / len(pairs)
        self._enqueue(k1, k2)  # only the full-size views' keys: the queue holds what a key looks like
        return loss

    @torch.no_grad()
    def _enqueue(self, k1: torch.Tensor, k2: torch.Tensor) -> None:
        """The keys of view 1 of the whole (global) batch, then of view 2, replace the oldest."""
        if self.gather_distributed:  # the autograd-aware gather, here under no_grad
            k1, k2 = torch.cat(differentiable_all_gather(k1)), torch.cat(differentiable_all_gather(k2))
        keys = F.normalize(torch.cat([k1, k2]).to(self.queue.dtype), dim=1)[-self.queue_size :]
        rows = (self.queue_pointer + torch.arange(len(keys), device=keys.device)) % self.queue_size
        self.queue[rows] = keys
        self.queue_pointer.copy_((self.queue_pointer + len(keys)) % self.queue_size)

    def check_images(self, images: int) -> str | None:
        if self.queue_size > images:
            return f"queue_size {self.queue_size} is larger than the {images} images, so images would meet their own keys as negatives; lower queue_size below {images}"
        return None

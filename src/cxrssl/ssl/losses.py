"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020; used by Gazda et al. 2021 with tau = 0.5 (PAPER.md). For an anchor i and
its positive j among the 2B views of a batch,

    l(i, j) = -log( exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) )

with cosine similarity, averaged over all 2B anchors.

With a memory bank of ``negatives`` (MoCo's queue, He et al. 2020) the same loss is
InfoNCE: each anchor z1[k] is contrasted with its positive z2[k] and with the bank
only, l(k) = -log( exp(s(z1_k, z2_k)/tau) / (exp(s(z1_k, z2_k)/tau) + sum_n exp(s(z1_k, q_n)/tau)) ),
as lightly's NTXentLoss does with a memory bank.

``multi_view_nt_xent_loss`` is NT-Xent over V views of each image (multi-crop, Caron
et al. 2020; solo-learn's SimCLR with several crops): every view is an anchor, the
other V - 1 views of its image are its positives, the views of the other images its
negatives, l(i) = -mean_{p in P(i)} log( exp(s_ip/tau) / sum_{k != i} exp(s_ik/tau) ).
With V = 2 it is NT-Xent.

``byol_loss`` is BYOL's normalised mean squared error (Grill et al. 2020).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gather_with_gradients(z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All processes' projections concatenated in rank order, and this process's rank.

    The gather keeps the autograd graph: the gradient a process computes for another
    process's projections is sent back to it, so each negative is trained by every
    anchor that saw it.
    """
    import torch.distributed as dist

    from cxrssl.distributed import differentiable_all_gather

    return torch.cat(differentiable_all_gather(z), dim=0), dist.get_rank()


def nt_xent_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
    gather_distributed: bool = False,
    negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """NT-Xent over views ``z1[k]`` and ``z2[k]`` of the same image k.

    With ``gather_distributed`` the negatives are the views of every process and the
    loss is the mean over this process's 2B anchors; averaged over processes (as
    DistributedDataParallel does with gradients) it equals the loss of one process
    holding the concatenated batch.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"expected two (B, D) projections of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    batch = z1.shape[0]
    # At least float32, even under bf16 autocast: exp(sim / tau) is sensitive to rounding.
    dtype = torch.promote_types(z1.dtype, torch.float32)
    if negatives is not None:
        return _info_nce_with_bank(z1.to(dtype), z2.to(dtype), negatives.to(dtype), temperature)
    local = F.normalize(torch.cat([z1, z2], dim=0).to(dtype), dim=1)  # rows: view 1 of all, then view 2 of all
    everyone, rank = _gather_with_gradients(local) if gather_distributed else (local, 0)
    # Column index of each local anchor in `everyone` (blocks of 2B per process).
    block_start = rank * 2 * batch
    anchor_columns = torch.arange(2 * batch, device=local.device) + block_start
    positive_columns = torch.cat([anchor_columns[batch:], anchor_columns[:batch]])

    logits = local @ everyone.T / temperature  # (2B, 2B * world)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(2 * batch), anchor_columns] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    return F.cross_entropy(logits, positive_columns)


def multi_view_nt_xent_loss(views: list[torch.Tensor], temperature: float = 0.5, gather_distributed: bool = False) -> torch.Tensor:
    """NT-Xent over V >= 2 views (B, D) of the same B images; views may come from crops of different sizes.

    With ``gather_distributed`` every process's views are negatives and positives keep
    to their own image, as with :func:`nt_xent_loss`.
    """
    if len(views) < 2 or any(v.ndim != 2 or v.shape != views[0].shape for v in views):
        raise ValueError(f"expected at least two (B, D) projections of equal shape, got {[tuple(v.shape) for v in views]}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if len(views) == 2:
        return nt_xent_loss(views[0], views[1], temperature, gather_distributed)
    batch, count = views[0].shape[0], len(views)
    dtype = torch.promote_types(views[0].dtype, torch.float32)
    local = F.normalize(torch.cat(views, dim=0).to(dtype), dim=1)  # rows: view 1 of all, view 2 of all, ...
    images = torch.arange(batch, device=local.device).repeat(count)
    everyone, rank = _gather_with_gradients(local) if gather_distributed else (local, 0)
    world = everyone.shape[0] // (count * batch)
    # The image of every column of `everyone` (blocks of V*B per process), numbered across processes.
    offsets = torch.arange(world, device=local.device).repeat_interleave(count * batch) * batch
    column_images = images.repeat(world) + offsets
    anchor_images = images + rank * batch
    anchor_columns = torch.arange(count * batch, device=local.device) + rank * count * batch

    logits = local @ everyone.T / temperature
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(count * batch), anchor_columns] = True
    log_prob = torch.log_softmax(logits.masked_fill(self_mask, float("-inf")), dim=1)
    positives = (anchor_images[:, None] == column_images[None, :]) & ~self_mask
    return -(log_prob.masked_fill(~positives, 0).sum(dim=1) / (count - 1)).mean()


def _info_nce_with_bank(z1: torch.Tensor, z2: torch.Tensor, bank: torch.Tensor, temperature: float) -> torch.Tensor:
    """Anchors z1, positives z2, negatives the rows of ``bank``; the positive is logit 0."""
    if bank.ndim != 2 or bank.shape[1] != z1.shape[1]:
        raise ValueError(f"negatives must be (N, {z1.shape[1]}), got {tuple(bank.shape)}")
    anchors, positives = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    positive = (anchors * positives).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, anchors @ F.normalize(bank, dim=1).T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(anchors), dtype=torch.long, device=anchors.device))


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z); no gradient flows into ``target``."""
    dtype = torch.promote_types(prediction.dtype, torch.float32)
    p, z = F.normalize(prediction.to(dtype), dim=1), F.normalize(target.detach().to(dtype), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()

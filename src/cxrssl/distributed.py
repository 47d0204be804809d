"""Multi-process training through torchrun: process group set-up and synced BatchNorm.

``torchrun --nproc_per_node N -m cxrssl pretrain ...`` sets RANK, WORLD_SIZE and
LOCAL_RANK; everything here reads them. NCCL is used on GPUs, gloo on the CPU.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_environment(device_type: str) -> DistributedContext:
    """Join the process group that torchrun describes; a no-op for a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def differentiable_all_gather(tensor: torch.Tensor) -> list[torch.Tensor]:
    """All processes' tensors, keeping autograd: gradients flow back to their owners."""
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # torch 2.14 marks these in favour of a private module; they remain the
        # public, documented autograd-aware collectives.
        warnings.simplefilter("ignore", FutureWarning)
        return list(all_gather(tensor))


def differentiable_all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes, keeping autograd (the gradient is summed back too)."""
    from torch.distributed.nn.functional import all_reduce

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(tensor)


class GlooSyncBatchNorm(_BatchNorm):
    """BatchNorm whose batch statistics span all processes, on any device.

    torch's SyncBatchNorm runs only on GPUs; this one uses the differentiable
    ``all_reduce`` of ``torch.distributed.nn`` so CPU runs over gloo normalise
    exactly as one process holding the whole batch would. It keeps BatchNorm's
    parameter and buffer names, so checkpoints load into plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        all_reduce = differentiable_all_reduce
        reduce_dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = all_reduce(torch.tensor([input.numel() / input.shape[1]], dtype=input.dtype, device=input.device))
        # Two passes (mean, then centred squares) are as accurate as one-process BatchNorm.
        mean = all_reduce(input.sum(reduce_dims)) / count
        centred = input - mean.view(shape)
        variance = all_reduce((centred * centred).sum(reduce_dims)) / count
        output = centred * torch.rsqrt(variance.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                unbiased = variance * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
                self.num_batches_tracked.add_(1)
        return output


def sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Make every BatchNorm layer use statistics over all processes."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_to_gloo_sync(module)


def _convert_to_gloo_sync(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, GlooSyncBatchNorm):
        synced = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        like = next(iter(module.state_dict().values()), None)
        if like is not None and like.is_floating_point():  # keep the layer's dtype and device
            synced = synced.to(device=like.device, dtype=like.dtype)
        synced.load_state_dict(module.state_dict())
        synced.train(module.training)
        for name, parameter in module.named_parameters(recurse=False):  # frozen momentum targets stay frozen
            getattr(synced, name).requires_grad_(parameter.requires_grad)
        return synced
    for name, child in module.named_children():
        module.add_module(name, _convert_to_gloo_sync(child))
    return module

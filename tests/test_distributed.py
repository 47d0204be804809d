"""Two processes over gloo must train exactly like one process with the whole batch."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cxrssl.distributed import GlooSyncBatchNorm, sync_batchnorm
from cxrssl.ssl.methods import BYOL, MoCo, SimCLR
from tests.commands import tiny_pretrain

pytestmark = pytest.mark.distributed
BATCH, SIZE = 8, 32


# float64 throughout, so that any mismatch is a real difference and not rounding
# in a different order of summation.
def _model(gather: bool, method: str = "simclr"):
    torch.manual_seed(0)
    method = method.removesuffix("-multicrop")
    kind, settings = {"simclr": (SimCLR, {}), "moco": (MoCo, {"queue_size": 12}), "byol": (BYOL, {})}[method]
    return kind("resnet18", hidden_features=32, out_features=16, gather_distributed=gather, **settings).double()


def _views(method: str = "simclr"):
    """Two full-size views, and for a multi-crop method three smaller ones (positives across processes stay per image)."""
    generator = torch.Generator().manual_seed(1)
    shape = (BATCH, 1, SIZE, SIZE)
    views = [torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(2)]
    if method.endswith("-multicrop"):
        views += [torch.randn((BATCH, 1, SIZE, SIZE), generator=generator, dtype=torch.float64)[..., :24, :24].contiguous() for _ in range(3)]
    return views


def _worker(rank: int, world: int, init_file: str, out_dir: str, method: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = sync_batchnorm(_model(gather=True, method=method), "cpu")
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    share = BATCH // world
    mine = slice(rank * share, (rank + 1) * share)
    loss = ddp(*(view[mine] for view in _views(method)))
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    mean_loss /= world
    if rank == 0:
        payload = {f"grad.{name}": p.grad.numpy() for name, p in model.named_parameters() if p.requires_grad}
        payload.update({f"buffer.{name}": b.numpy() for name, b in model.named_buffers()})
        np.savez(os.path.join(out_dir, "distributed.npz"), loss=mean_loss.numpy(), **payload)
    dist.destroy_process_group()


@pytest.mark.parametrize("method", ["simclr", "moco", "byol", "simclr-multicrop", "moco-multicrop"])
def test_two_gloo_processes_match_one_process_on_the_concatenated_batch(tmp_path, method):
    # For MoCo the buffers compared include the queue: both processes' keys, in global batch order.
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), method), nprocs=2, join=True)
    result = np.load(tmp_path / "distributed.npz")

    single = _model(gather=False, method=method)
    loss = single(*_views(method))
    loss.backward()
    assert float(result["loss"]) == pytest.approx(loss.item(), rel=1e-12)
    checked = 0
    for name, parameter in single.named_parameters():
        if not parameter.requires_grad:  # momentum targets
            continue
        np.testing.assert_allclose(result[f"grad.{name}"], parameter.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
        checked += 1
    for name, buffer in single.named_buffers():  # running BatchNorm statistics too
        np.testing.assert_allclose(result[f"buffer.{name}"], buffer.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
    assert checked > 50


def test_gloo_sync_batchnorm_keeps_state_dict_names_and_eval_behaviour():
    plain = torch.nn.BatchNorm2d(3)
    plain.running_mean.fill_(0.5)
    synced = sync_batchnorm(torch.nn.Sequential(plain), "cpu")[0]
    assert isinstance(synced, GlooSyncBatchNorm)
    assert synced.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(4, 3, 5, 5)
    # Outside a process group it is ordinary BatchNorm.
    torch.testing.assert_close(synced.eval()(x), plain.eval()(x))


@pytest.mark.slow
def test_torchrun_pretrain_end_to_end(tmp_path, phantom_manifest):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "cxrssl",
        *tiny_pretrain(phantom_manifest, tmp_path / "run", 2),
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    import json

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["processes"] == 2
    assert (tmp_path / "run" / "checkpoints" / "epoch_0002.json").is_file()
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "complete"
    # BatchNorm layers are replaced for syncing; their new parameters must still train.
    from cxrssl.checkpoint import load_tensors

    tensors, _ = load_tensors(tmp_path / "run" / "checkpoints" / "epoch_0002.json")
    for name in ("backbone.bn1.weight", "backbone.layer4.1.bn2.bias", "head.1.weight"):
        initial = torch.zeros_like(tensors[name]) if name.endswith("bias") else torch.ones_like(tensors[name])
        assert not torch.equal(tensors[name], initial), name


# --- two nodes: two torchrun launchers meeting at a c10d rendezvous on 127.0.0.1 ----------------


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _two_launchers(arguments: list[str], port: int, rdzv_id: str) -> list[subprocess.Popen]:
    """One launcher per "node" (both on this machine), one process each: what a SLURM job with two nodes runs."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(__file__)), os.environ.get("PYTHONPATH", "")]),
    }
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc_per_node",
        "1",
        "--rdzv_backend",
        "c10d",
        "--rdzv_endpoint",
        f"127.0.0.1:{port}",
        "--rdzv_id",
        rdzv_id,
        "--max_restarts",
        "0",
    ]
    return [subprocess.Popen([*launch, *arguments], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]


def _wait(launchers: list[subprocess.Popen], timeout: float = 300) -> None:
    for launcher in launchers:
        _, err = launcher.communicate(timeout=timeout)
        assert launcher.returncode == 0, err[-3000:]


def node_worker(out_dir: str) -> None:
    """Run under torchrun: one step of SimCLR on this process's share of the batch; rank 0 saves the gradients."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = sync_batchnorm(_model(gather=True), "cpu")
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    share = BATCH // world
    mine = slice(rank * share, (rank + 1) * share)
    loss = ddp(*(view[mine] for view in _views()))
    loss.backward()
    if rank == 0:
        np.savez(os.path.join(out_dir, "nodes.npz"), **{name: p.grad.numpy() for name, p in model.named_parameters() if p.requires_grad})
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_nodes_train_as_one_process_with_the_whole_batch(tmp_path):
    script = tmp_path / "node.py"
    script.write_text(f"from tests.test_distributed import node_worker\nnode_worker({str(tmp_path)!r})\n")
    _wait(_two_launchers([str(script)], _free_port(), "grads"))
    result = np.load(tmp_path / "nodes.npz")
    single = _model(gather=False)
    single(*_views()).backward()
    for name, parameter in single.named_parameters():
        np.testing.assert_allclose(result[name], parameter.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.slow
def test_two_nodes_killed_and_requeued_with_the_same_command_finish_as_an_uninterrupted_run(tmp_path, phantom_manifest):
    import json
    import signal
    import time

    from cxrssl.checkpoint import load_tensors

    def pretrain(run):
        return ["-m", "cxrssl", *tiny_pretrain(phantom_manifest, run, 4, "--resume")]

    whole = tmp_path / "whole"
    _wait(_two_launchers(pretrain(whole), _free_port(), "whole"))
    run = tmp_path / "requeued"
    launchers = _two_launchers(pretrain(run), _free_port(), "first")
    deadline = time.monotonic() + 300
    log = run / "log.csv"
    while not (log.is_file() and len(log.read_text().splitlines()) >= 2):  # stopped after its first epoch, like a job at its time limit
        assert time.monotonic() < deadline and all(launcher.poll() is None for launcher in launchers), "no epoch finished"
        time.sleep(0.2)
    for launcher in launchers:
        launcher.send_signal(signal.SIGTERM)  # what SLURM sends before the time limit
    for launcher in launchers:
        launcher.communicate(timeout=120)
    status = json.loads((run / "status.json").read_text())
    assert status["state"] in ("interrupted", "complete") and not (run / ".lock").exists()  # complete only if it raced to the end
    _wait(_two_launchers(pretrain(run), _free_port(), "second"))  # the requeued job: the same command
    assert json.loads((run / "status.json").read_text())["state"] == "complete"
    ours, _ = load_tensors(run / "checkpoints" / "epoch_0004.json")
    reference, _ = load_tensors(whole / "checkpoints" / "epoch_0004.json")
    for name, tensor in reference.items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=0, msg=name)

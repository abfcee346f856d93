#!/usr/bin/env python3
"""The peer of `shardfeed-train --data synthetic`: PyTorch eager training of torchvision's
ResNet-50 with the same batch, precision (bf16 autocast, fp32 master weights), memory format
(channels-last), loss (cross entropy, label smoothing 0.1), LARS math (MLPerf reference; per-layer
trust ratios, BN parameters and biases skipped) and synthetic on-device batches (a 4x4 class
pattern upsampled plus fixed noise). The loss of step k is read while step k+1 is queued, as the
Rust trainer does.

Prints `pytorch-eager resnet50: N images in T s = R img/s` over the steps after --warmup, and with
--phases `pytorch-eager phases (ms/step): data .. zero .. forward .. loss .. backward .. allreduce
.. lars .. sync .. total ..`, the same phases `shardfeed-train --phases` prints (allreduce is 0: with
DDP it happens inside backward). On CUDA --phases synchronises at every phase boundary: measure
img/s without it.

Under torchrun (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel and the line
starts `pytorch-ddp`, images counted over all ranks: the peer of `torchrun --no-python ...
shardfeed-train`.

  python bench/pytorch_eager_resnet50.py                       # H100: batch 256, 224x224, bf16
  python bench/pytorch_eager_resnet50.py --device cpu --batch-size 4 --image-size 32 --steps 3 --warmup 1
  torchrun --standalone --nproc-per-node 8 bench/pytorch_eager_resnet50.py   # DDP, 8 GPUs
"""
import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchvision
from torch.nn.parallel import DistributedDataParallel as DDP


def lars_step(params, moms, scaled_mask, lr, momentum, weight_decay, eta, epsilon):
    """The MLPerf reference's LARS update over all parameters with multi-tensor ops."""
    grads = [p.grad for p in params]
    w_norm = torch.stack(torch._foreach_norm(params))
    g_norm = torch.stack(torch._foreach_norm(grads))
    trust = torch.where(
        scaled_mask & (w_norm > 0) & (g_norm > 0),
        eta * w_norm / (g_norm + weight_decay * w_norm + epsilon),
        torch.ones_like(w_norm),
    )
    scaled_lr = (trust * lr).unbind()
    wd = [weight_decay if s else 0.0 for s in scaled_mask.tolist()]
    upd = [g.add(p, alpha=d) if d else g for g, p, d in zip(grads, params, wd)]
    torch._foreach_mul_(upd, scaled_lr)
    torch._foreach_mul_(moms, momentum)
    torch._foreach_sub_(moms, upd)
    torch._foreach_add_(params, moms)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--memory-format", choices=["nhwc", "nchw"], default="nhwc")
    ap.add_argument("--lr", type=float, default=10.0)
    ap.add_argument("--phases", action="store_true", help="print ms/step per phase")
    ap.add_argument("--threads", type=int, help="intra-op threads (CPU) [default: torch's]")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    # Under torchrun (WORLD_SIZE > 1): PyTorch DDP, the peer of `shardfeed-train` launched the
    # same way (NCCL on CUDA, Gloo on the CPU; 25 MB buckets, gradients as bucket views, BN
    # statistics per rank as `shardfeed-train` keeps them).
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(args.device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    fmt = torch.channels_last if args.memory_format == "nhwc" else torch.contiguous_format
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=args.classes).to(device, memory_format=fmt)
    model.train()
    params = [p for p in model.parameters()]
    if world > 1:
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                    bucket_cap_mb=25, gradient_as_bucket_view=True, broadcast_buffers=False)
    moms = [torch.zeros_like(p) for p in params]
    scaled_mask = torch.tensor([p.ndim > 1 for p in params], device=device)

    b, s = args.batch_size, args.image_size
    protos = torch.rand(args.classes, 3, 4, 4, device=device) * 3.4 - 1.7
    noise = [(torch.rand(b, 3, s, s, device=device) * 3.4 - 1.7).contiguous(memory_format=fmt)
             for _ in range(2)]

    def batch(i):
        labels = torch.randint(args.classes, (b,), device=device)
        x = F.interpolate(protos[labels], size=(s, s), mode="nearest") + noise[i % 2]
        return x.contiguous(memory_format=fmt), labels

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    names = ["data", "zero", "forward", "loss", "backward", "allreduce", "lars", "sync"]
    totals = dict.fromkeys(names, 0.0)
    timing = False
    last = 0.0

    def mark(phase):
        nonlocal last
        if timing:
            sync()
            now = time.perf_counter()
            totals[phase] += now - last
            last = now

    prev = None
    t0 = None
    for step in range(args.steps):
        if step == args.warmup:
            sync()
            t0 = time.perf_counter()
            timing = args.phases
        if timing:
            sync()
            last = time.perf_counter()
        x, y = batch(step)
        mark("data")
        for p in params:
            p.grad = None
        mark("zero")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            logits = model(x)
        mark("forward")
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        mark("loss")
        loss.backward()
        mark("backward")
        mark("allreduce")
        with torch.no_grad():
            lars_step(params, moms, scaled_mask, args.lr, 0.9, 1e-4, 0.001, 1e-7)
        mark("lars")
        if prev is not None:
            prev.item()
        prev = loss.detach()
        mark("sync")
    prev.item()
    sync()
    dt = time.perf_counter() - t0
    n = (args.steps - args.warmup) * b * world
    name = "pytorch-ddp" if world > 1 else "pytorch-eager"
    if rank == 0:
        print(f"{name} resnet50: {n} images in {dt:.3f} s = {n / dt:.1f} img/s")
    if args.phases and rank == 0:
        k = args.steps - args.warmup
        per = {p: totals[p] * 1e3 / k for p in names}
        line = " ".join(f"{p} {v:.1f}" for p, v in per.items())
        print(f"{name} phases (ms/step): {line} total {sum(per.values()):.1f}")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

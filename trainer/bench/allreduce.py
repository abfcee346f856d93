"""The peer of shardfeed-allreduce-bench: the same all-reduce of one ResNet-50 gradient buffer
(25,557,032 fp32, averaged: sum then divide by the world size) through torch.distributed
(init_process_group on the env:// rendezvous torchrun sets up; gloo on the CPU, nccl on CUDA),
printing the same line. Run under torchrun:

    torchrun --standalone --nproc-per-node 2 trainer/bench/allreduce.py --iters 20
"""

import argparse
import os
import time

import torch
import torch.distributed as dist


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--numel", type=int, default=25_557_032)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    cuda = a.device == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    buf = torch.ones(a.numel, dtype=torch.float32, device=device)

    def average():
        dist.all_reduce(buf)
        buf.div_(world)

    for _ in range(a.warmup):
        average()
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(a.iters):
        average()
    if cuda:
        torch.cuda.synchronize(device)
    secs = time.perf_counter() - start
    if rank == 0:
        nbytes = a.numel * 4
        each = secs / a.iters
        bus = nbytes * 2 * (world - 1) / world / each / 1e9
        print(f"torch.distributed allreduce: world {world} x {nbytes / 1e6:.1f} MB: "
              f"{each * 1e3:.2f} ms each, bus {bus:.3f} GB/s")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""A torchvision-style ImageNet training loop fed by shardfeed.Loader.

What changes from torchvision's reference script (references/classification/train.py): the
ImageFolder + transforms + DistributedSampler + DataLoader block becomes one shardfeed.Loader
per split, and normalisation moves onto the device (the loader hands out uint8 images; four
times fewer bytes cross PCIe). Resume is exact: the loader's state_dict goes into the
checkpoint with the model's.

Runs anywhere: without --data it makes a tiny synthetic dataset (shardfeed.synth +
shardfeed.shard) and trains a small ResNet on the CPU for a couple of epochs:

    python examples/train_resnet_torch.py                       # tiny CPU run (4 min on 2 busy cores)
    python examples/train_resnet_torch.py --data /data/imagenet-shards --arch resnet50 \\
        --size 224 --batch 256 --epochs 90 --device cuda        # the real thing
    torchrun --nproc-per-node 8 examples/train_resnet_torch.py --data ... --device cuda

Under torchrun each process reads its own share of every epoch: the loader takes rank and world
from torch.distributed.
"""

import argparse
import os
import tempfile
import time

import torch
import torch.nn.functional as F

import shardfeed

MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="shards root with train/ and val/ (default: make a tiny synthetic one)")
    p.add_argument("--arch", default="resnet18", help="a torchvision model name")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--workers", type=int, default=None, help="decode threads (default: all cores)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--checkpoint", help="save here after every epoch, and resume from it if it exists")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (a smoke test)")
    return p.parse_args()


def tiny_dataset() -> str:
    root = tempfile.mkdtemp(prefix="shardfeed-example-")
    shardfeed.synth(os.path.join(root, "images"), classes=4, per_class=32, val_per_class=8, seed=0)
    shardfeed.shard(os.path.join(root, "images"), os.path.join(root, "shards"), shards=2)
    return os.path.join(root, "shards")


def make_model(arch: str, classes: int):
    try:
        import torchvision

        return torchvision.models.get_model(arch, num_classes=classes)
    except ImportError:  # torch alone: a small CNN instead
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, stride=2, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, classes),
        )


def main():
    a = parse_args()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        torch.distributed.init_process_group("nccl" if a.device == "cuda" else "gloo")
        if a.device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device(a.device)
    data = a.data or tiny_dataset()

    # The whole input pipeline: decode, RandomResizedCrop + flip (train) or resize + centre crop
    # (val), batching, sharding across ranks, prefetching. rank/world come from torch.distributed.
    train = shardfeed.Loader(data, batch_size=a.batch, transform="train", size=a.size,
                             workers=a.workers, last_batch="drop")
    val = shardfeed.Loader(data, batch_size=a.batch, transform="val", size=a.size,
                           workers=a.workers, last_batch="pad")
    classes = len(shardfeed.Dataset(train.path).classes)

    model = make_model(a.arch, classes).to(device, memory_format=torch.channels_last)
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-5)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

    def on_device(images, labels):
        # uint8 NCHW (channels-last memory) → float, normalised on the device.
        images = images.to(device, non_blocking=True).float().sub_(mean).div_(std)
        return images, labels.to(device, non_blocking=True)

    start_epoch = 0
    if a.checkpoint and os.path.exists(a.checkpoint):
        ck = torch.load(a.checkpoint, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        train.load_state_dict(ck["train_loader"])  # exact: mid-epoch too
        start_epoch = ck["train_loader"]["epoch"]
        print(f"resumed at epoch {start_epoch} batch {ck['train_loader']['batch']}")

    steps = 0
    for epoch in range(start_epoch, a.epochs):
        train.set_epoch(epoch)
        model.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        for images, labels in train:
            images, labels = on_device(images, labels)
            loss = F.cross_entropy(model(images), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(labels)
            loss_sum += loss.item() * len(labels)
            steps += 1
            if a.max_steps and steps >= a.max_steps:
                break
        dt = time.perf_counter() - t0

        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in val:
                keep = len(labels) - val.batch_info.padding  # padding duplicates are last
                images, labels = on_device(images, labels)
                pred = model(images).argmax(1)
                correct += int((pred[:keep] == labels[:keep]).sum())
                total += keep
        print(f"epoch {epoch}: train loss {loss_sum / max(seen, 1):.3f}, {seen / dt:.0f} img/s; "
              f"val top-1 {correct / max(total, 1):.3f} ({total} images)", flush=True)
        if a.checkpoint and (not distributed or torch.distributed.get_rank() == 0):
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "train_loader": train.state_dict()}, a.checkpoint)
        if a.max_steps and steps >= a.max_steps:
            break

    if distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

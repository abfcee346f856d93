#!/usr/bin/env python3
"""Writes tests/data/reference.json: the values the trainer's Rust tests check against.

- LARS: three steps of the MLPerf reference's update rule (mlcommons/training,
  image_classification/tensorflow2/lars_optimizer.py), written out per tensor with torch ops in
  float64, on a conv weight, a BN scale/shift and an fc weight/bias, including a zero-norm weight.
- The learning-rate schedule (lars_util.py's PolynomialDecayWithWarmup) at a few steps.
- torchvision's ResNet-50 and ResNet-18 parameter names, shapes and counts.

Run with the project's venv: .venv/torch/bin/python trainer/scripts/gen_reference.py
"""
import json
import os

import torch
import torchvision

torch.manual_seed(1234)

CFG = dict(momentum=0.9, weight_decay=5e-4, eta=0.02, epsilon=1e-7)
LRS = [0.5, 1.5, 0.75]

# name, shape, skipped (the reference's skip_list: batch norm and bias)
PARAMS = [
    ("conv.weight", (4, 3, 3, 3), False),
    ("bn.weight", (4,), True),
    ("bn.bias", (4,), True),
    ("fc.weight", (5, 4), False),
    ("fc.bias", (5,), True),
    ("dead.weight", (2, 3), False),  # all-zero weights: trust ratio 1
]


def lars_step(w, g, v, lr, skipped, cfg):
    """One update of the reference's _resource_apply_dense (non-Nesterov)."""
    scaled_lr = lr
    if not skipped:
        w_norm = torch.linalg.vector_norm(w)
        g_norm = torch.linalg.vector_norm(g)
        if w_norm > 0 and g_norm > 0:
            trust = cfg["eta"] * w_norm / (g_norm + cfg["weight_decay"] * w_norm + cfg["epsilon"])
        else:
            trust = torch.tensor(1.0, dtype=torch.float64)
        scaled_lr = lr * trust
        g = g + cfg["weight_decay"] * w
    v = v * cfg["momentum"] - g * scaled_lr
    return w + v, v


def lars_case():
    weights = {}
    for name, shape, _ in PARAMS:
        w = torch.randn(shape, dtype=torch.float64)
        if name == "dead.weight":
            w = torch.zeros(shape, dtype=torch.float64)
        weights[name] = w
    momentum = {n: torch.zeros_like(w) for n, w in weights.items()}
    case = {
        "config": CFG,
        "params": [
            {"name": n, "shape": list(s), "skipped": k, "init": weights[n].flatten().tolist()}
            for n, s, k in PARAMS
        ],
        "steps": [],
    }
    for lr in LRS:
        grads = {n: torch.randn(w.shape, dtype=torch.float64) * 0.1 for n, w in weights.items()}
        grads["fc.bias"] = grads["fc.bias"] * 0.0 if lr == LRS[1] else grads["fc.bias"]
        for name, _, skipped in PARAMS:
            weights[name], momentum[name] = lars_step(
                weights[name], grads[name], momentum[name], lr, skipped, CFG
            )
        case["steps"].append(
            {
                "lr": lr,
                "grads": {n: g.flatten().tolist() for n, g in grads.items()},
                "weights_after": {n: w.flatten().tolist() for n, w in weights.items()},
                "momentum_after": {n: v.flatten().tolist() for n, v in momentum.items()},
            }
        )
    return case


def schedule_case():
    # PolynomialDecayWithWarmup(batch 4096): base 10, warmup 5 epochs, end 1e-4, power 2.
    base, end, spe, warmup_epochs, train_steps = 10.0, 1e-4, 312, 5, 312 * 40
    warmup_steps = warmup_epochs * spe
    decay_steps = train_steps - warmup_steps + 1

    def lr(step):
        if step <= warmup_steps:
            return base * step / warmup_steps
        p = min(step - warmup_steps, decay_steps) / decay_steps
        return (base - end) * (1 - p) ** 2 + end

    steps = [0, 1, 100, warmup_steps - 1, warmup_steps, warmup_steps + 1, 5000, train_steps - 1,
             train_steps, train_steps + 50]
    return {
        "base_lr": base, "end_lr": end, "steps_per_epoch": spe, "warmup_epochs": warmup_epochs,
        "train_steps": train_steps, "points": [[s, lr(s)] for s in steps],
    }


def resnet_case(ctor):
    m = ctor()
    params = {n: list(p.shape) for n, p in m.named_parameters()}
    buffers = {n: list(b.shape) for n, b in m.named_buffers() if not n.endswith("num_batches_tracked")}
    return {"parameters": sum(p.numel() for p in m.parameters()), "param_shapes": params,
            "buffer_shapes": buffers}


def main():
    out = {
        "generated_by": f"trainer/scripts/gen_reference.py, torch {torch.__version__}, torchvision {torchvision.__version__}",
        "lars": lars_case(),
        "schedule": schedule_case(),
        "resnet50": resnet_case(torchvision.models.resnet50),
        "resnet18": resnet_case(torchvision.models.resnet18),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.normpath(path)}")


if __name__ == "__main__":
    main()

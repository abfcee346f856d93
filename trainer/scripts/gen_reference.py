#!/usr/bin/env python3
"""Writes the values the trainer's Rust tests check against (tests/reference.rs):

tests/data/reference.json
- LARS: `MLPerfLARS` below, a torch.optim.Optimizer that does what the MLPerf ResNet-50
  reference's optimizer does (mlcommons/training, image_classification/tensorflow2/
  lars_optimizer.py: LARSOptimizer.compute_lr and _resource_apply_dense), trains a small
  conv/BN/fc model in float64 for a few steps on real autograd gradients, with the learning rate
  of lars_util.py's schedule; per step the gradients, the weights and the momentum are recorded.
  The model includes a zero-initialised layer (‖w‖ = 0) and an unused one (‖g‖ = 0), and a second
  trajectory uses Nesterov momentum.
- The learning-rate schedule (lars_util.py's PolynomialDecayWithWarmup) at a few steps.
- torchvision's ResNet-50 and ResNet-18 parameter names, shapes and counts.

tests/data/resnet50_forward.json
- torchvision.models.resnet50's logits (eval and train mode) for a 2x3x64x64 input, with every
  parameter, BN statistic and input value made by `fill` below, a formula the Rust test
  implements too, so no weights are committed.

Rerun (a minute on a CPU), from the repository root, with the project's venv:
    .venv/torch/bin/python trainer/scripts/gen_reference.py
"""
import json
import math
import os

import torch
import torchvision
from torch import nn

torch.manual_seed(1234)
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")


class MLPerfLARS(torch.optim.Optimizer):
    """LARS exactly as mlcommons/training's LARSOptimizer (tensorflow2/lars_optimizer.py), as a
    torch.optim.Optimizer over named parameters.

    - A parameter is skipped when one of `skip_list` is a substring of its name (the reference
      passes ['batch_normalization', 'bias']; 'bn' is torchvision's name for batch norm).
    - compute_lr: for the others, trust_ratio = where(‖w‖ > 0, where(‖g‖ > 0,
      eeta·‖w‖ / (‖g‖ + weight_decay·‖w‖ + epsilon), 1), 1); scaled_lr = lr·trust_ratio;
      grad = grad + weight_decay·w. Skipped ones: scaled_lr = lr, grad unchanged.
    - _resource_apply_dense: mom = mom·momentum − grad·scaled_lr; w = w + mom, or with Nesterov
      w = w + mom·momentum − grad·scaled_lr.
    - epsilon: `epsilon or keras.backend.epsilon()`, so 0 means 1e-7.
    - The learning rate is `lr_schedule(iterations)`, iterations being the updates applied so far
      (the reference's `_prepare_local`: `lr_t(self.iterations)`).
    """

    def __init__(self, named_params, lr_schedule, momentum=0.9, weight_decay=0.0001, eeta=0.001,
                 epsilon=0.0, skip_list=("bn", "bias"), use_nesterov=False):
        names, params = zip(*named_params)
        super().__init__([{"params": list(params), "names": list(names)}], {})
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.eeta = eeta
        self.epsilon = epsilon or 1e-7
        self.skip_list = skip_list
        self.use_nesterov = use_nesterov
        self.iterations = 0

    def skipped(self, name):
        return any(s in name for s in self.skip_list)

    def compute_lr(self, grad, var, name, lr):
        scaled_lr = torch.tensor(lr, dtype=var.dtype)
        if not self.skipped(name):
            w_norm = torch.linalg.vector_norm(var)
            g_norm = torch.linalg.vector_norm(grad)
            one = torch.ones((), dtype=var.dtype)
            trust_ratio = torch.where(
                w_norm > 0,
                torch.where(g_norm > 0,
                            self.eeta * w_norm / (g_norm + self.weight_decay * w_norm + self.epsilon),
                            one),
                one)
            scaled_lr = lr * trust_ratio
            grad = grad + self.weight_decay * var
        return scaled_lr, grad

    @torch.no_grad()
    def step(self):
        lr = self.lr_schedule(self.iterations)
        for group in self.param_groups:
            for name, var in zip(group["names"], group["params"]):
                scaled_lr, grad = self.compute_lr(var.grad, var, name, lr)
                state = self.state[var]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(var)
                mom = state["momentum"]
                mom_t = mom * self.momentum - grad * scaled_lr
                mom.copy_(mom_t)
                if self.use_nesterov:
                    var_t = var + mom_t * self.momentum - grad * scaled_lr
                else:
                    var_t = var + mom_t
                var.copy_(var_t)
        self.iterations += 1
        return lr


class Tiny(nn.Module):
    """conv/BN twice, an fc, a zero-initialised head (‖w‖ = 0 at first) and a layer whose output
    is multiplied by 0 (‖g‖ = 0, so only weight decay moves it)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 5)
        self.head = nn.Linear(5, 3)
        nn.init.zeros_(self.head.weight)
        self.unused = nn.Linear(5, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.fc(x.mean(dim=(2, 3))))
        return self.head(x) + 0.0 * self.unused(x)


LARS_CFG = dict(momentum=0.9, weight_decay=5e-4, eeta=0.02, epsilon=0.0)
# lars_util.py's schedule, small: base 2, end 1e-4, 2 steps per epoch, 1 warmup epoch, 3 epochs.
LARS_SCHEDULE = dict(base_lr=2.0, end_lr=1e-4, steps_per_epoch=2, warmup_epochs=1, train_steps=6)
LARS_STEPS = 5


def poly_warmup(base_lr, end_lr, steps_per_epoch, warmup_epochs, train_steps):
    """lars_util.py's PolynomialDecayWithWarmup (power 2)."""
    warmup_steps = warmup_epochs * steps_per_epoch
    decay_steps = train_steps - warmup_steps + 1

    def lr(step):
        if step <= warmup_steps:
            return base_lr * step / warmup_steps
        p = min(step - warmup_steps, decay_steps) / decay_steps
        return (base_lr - end_lr) * (1 - p) ** 2 + end_lr

    return lr


def lars_trajectory(nesterov):
    torch.manual_seed(1234)
    model = Tiny().double()
    x = torch.randn(8, 3, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    named = list(model.named_parameters())
    opt = MLPerfLARS(named, poly_warmup(**LARS_SCHEDULE), use_nesterov=nesterov, **LARS_CFG)
    out = {
        "nesterov": nesterov,
        "init": {n: p.detach().flatten().tolist() for n, p in named},
        "steps": [],
    }
    for _ in range(LARS_STEPS):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
        loss.backward()
        lr = opt.step()
        out["steps"].append({
            "lr": lr,
            "grads": {n: p.grad.flatten().tolist() for n, p in named},
            "weights_after": {n: p.detach().flatten().tolist() for n, p in named},
            "momentum_after": {n: opt.state[p]["momentum"].flatten().tolist() for n, p in named},
        })
    return out


def lars_case():
    named = list(Tiny().named_parameters())
    opt = MLPerfLARS(named, lambda _: 0.0, **LARS_CFG)
    return {
        "config": dict(momentum=opt.momentum, weight_decay=opt.weight_decay, eta=opt.eeta,
                       epsilon=opt.epsilon),
        "schedule": LARS_SCHEDULE,
        "params": [{"name": n, "shape": list(p.shape), "skipped": opt.skipped(n)} for n, p in named],
        "trajectories": [lars_trajectory(False), lars_trajectory(True)],
    }


def schedule_case():
    # PolynomialDecayWithWarmup(batch 4096): base 10, warmup 5 epochs, end 1e-4, power 2.
    cfg = dict(base_lr=10.0, end_lr=1e-4, steps_per_epoch=312, warmup_epochs=5,
               train_steps=312 * 40)
    lr = poly_warmup(**cfg)
    warmup_steps = cfg["warmup_epochs"] * cfg["steps_per_epoch"]
    train_steps = cfg["train_steps"]
    steps = [0, 1, 100, warmup_steps - 1, warmup_steps, warmup_steps + 1, 5000, train_steps - 1,
             train_steps, train_steps + 50]
    return {**cfg, "points": [[s, lr(s)] for s in steps]}


def resnet_case(ctor):
    m = ctor()
    params = {n: list(p.shape) for n, p in m.named_parameters()}
    buffers = {n: list(b.shape) for n, b in m.named_buffers() if not n.endswith("num_batches_tracked")}
    return {"parameters": sum(p.numel() for p in m.parameters()), "param_shapes": params,
            "buffer_shapes": buffers}


def fnv1a32(name):
    h = 0x811C9DC5
    for b in name.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def fill(name, n):
    """n values in [-1, 1) for the tensor called `name`: element i is a 32-bit integer hash of
    (i + fnv1a32(name)) mod 2^32, divided by 2^31, minus 1. Integer steps only (no int64
    overflow: every product stays below 2^59) and exact float64 scaling, so the Rust test
    (tests/reference.rs) gets the same bits."""
    x = (torch.arange(n, dtype=torch.int64) + fnv1a32(name)) & 0xFFFFFFFF
    x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
    x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
    x = (x >> 16) ^ x
    return x.double() / 2.0**31 - 1.0


def fill_rule(name, shape, fc_in):
    """(scale, offset) of tensor `name`: its values are fill(name)·scale + offset."""
    if name.startswith("fc."):
        return 1.0 / math.sqrt(fc_in), 0.0
    if len(shape) == 4:
        # std sqrt(1/fan_in): half He's, so that in eval mode, where BN divides by running
        # variances of about 1 rather than the activations' own, the residual stream grows
        # ~1.25x per block (not 2x) and the logits stay O(1).
        return math.sqrt(3.0 / (shape[1] * shape[2] * shape[3])), 0.0
    if name.endswith(".weight") or name.endswith(".running_var"):
        return 0.25, 1.0
    return 0.1, 0.0  # BN shifts and running means


FORWARD_INPUT = [2, 3, 64, 64]


def forward_case():
    m = torchvision.models.resnet50()
    fc_in = m.fc.in_features
    with torch.no_grad():
        for n, t in list(m.named_parameters()) + list(m.named_buffers()):
            if n.endswith("num_batches_tracked"):
                continue
            scale, offset = fill_rule(n, list(t.shape), fc_in)
            t.copy_((fill(n, t.numel()) * scale + offset).view(t.shape).float())
        x = (fill("input", math.prod(FORWARD_INPUT)) * 2.0).view(FORWARD_INPUT).float()
        m.eval()
        eval_logits = m(x)
        m.train()
        train_logits = m(x)

    def f32(t):
        return [float(f"{v:.9g}") for v in t.flatten().tolist()]

    return {
        "generated_by": f"trainer/scripts/gen_reference.py, torch {torch.__version__}, torchvision {torchvision.__version__}",
        "model": "torchvision.models.resnet50()",
        "input_shape": FORWARD_INPUT,
        "input_scale": 2.0,
        "eval_logits": f32(eval_logits),
        "train_logits": f32(train_logits),
    }


def write(name, value, indent):
    path = os.path.normpath(os.path.join(DATA, name))
    with open(path, "w") as f:
        json.dump(value, f, indent=indent)
        f.write("\n")
    print(f"wrote {path}")


def main():
    out = {
        "generated_by": f"trainer/scripts/gen_reference.py, torch {torch.__version__}, torchvision {torchvision.__version__}",
        "lars": lars_case(),
        "schedule": schedule_case(),
        "resnet50": resnet_case(torchvision.models.resnet50),
        "resnet18": resnet_case(torchvision.models.resnet18),
    }
    write("reference.json", out, 1)
    write("resnet50_forward.json", forward_case(), None)

if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch reference for `cargo xtask bench-train`: the same network, training step and
inference as crates/nas-train/examples/bench_train.rs, timed the same way, on CPU.

Network: Conv3x3(3->16)+BN+ReLU -> Conv3x3/s2(16->32)+BN+ReLU -> GlobalAvgPool ->
Linear(32->10), softmax cross-entropy. Training step: forward, backward, SGD (lr 0.1,
momentum 0.9, Nesterov, weight decay 5e-4 on conv/linear weights only, as the ONNX step
does), plus the loss and the correct count read back every step. Inference: eval mode under
torch.no_grad(). Data: seeded random images in [0, 1) and random labels, made once.

Prints one line of JSON with the figures on stdout.
"""

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def reference_net(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, classes),
    )


def run_queue_wait_ns():
    """Nanoseconds this process's threads have waited for a CPU (Linux schedstat), or None."""
    try:
        total = 0
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
        return total
    except (OSError, IndexError, ValueError):
        return None


def wait_ms_per(before, n):
    after = run_queue_wait_ns()
    if before is None or after is None:
        return None
    return max(after - before, 0) / 1e6 / n


def summarize(ms):
    ms = sorted(ms)
    n = len(ms)
    p90 = ms[min(max(-(-n * 9 // 10), 1), n) - 1]
    return statistics.median(ms), ms[0], p90


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = reference_net()
    decay = [q for q in model.parameters() if q.ndim > 1]
    no_decay = [q for q in model.parameters() if q.ndim <= 1]
    opt = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": 5e-4},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=0.1,
        momentum=0.9,
        nesterov=True,
    )
    g = torch.Generator().manual_seed(a.seed)
    x = torch.rand(a.batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (a.batch,), generator=g)

    def train_step():
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        value = loss.item()
        correct = (logits.detach().argmax(1) == y).sum().item()
        return (time.perf_counter() - t) * 1e3, value, correct

    model.train()
    losses = []
    for _ in range(a.warmup):
        losses.append(train_step()[1])
    train_ms = []
    wait = run_queue_wait_ns()
    for _ in range(a.steps):
        ms, loss, _ = train_step()
        train_ms.append(ms)
        losses.append(loss)
    train_wait = wait_ms_per(wait, a.steps)

    model.eval()

    def infer():
        t = time.perf_counter()
        with torch.no_grad():
            out = model(x)
        ms = (time.perf_counter() - t) * 1e3
        assert out.shape == (a.batch, 10)
        return ms

    for _ in range(a.warmup):
        infer()
    wait = run_queue_wait_ns()
    infer_ms = [infer() for _ in range(a.steps)]
    infer_wait = wait_ms_per(wait, a.steps)

    tm, tmin, tp90 = summarize(train_ms)
    im, imin, ip90 = summarize(infer_ms)
    print(
        json.dumps(
            {
                "torch_version": torch.__version__,
                "python": platform.python_version(),
                "mkldnn": bool(torch.backends.mkldnn.is_available()),
                "threads": torch.get_num_threads(),
                "batch": a.batch,
                "steps": a.steps,
                "warmup": a.warmup,
                "train_ms_median": tm,
                "train_ms_min": tmin,
                "train_ms_p90": tp90,
                "train_img_s": a.batch / tm * 1e3,
                "infer_ms_median": im,
                "infer_ms_min": imin,
                "infer_ms_p90": ip90,
                "infer_img_s": a.batch / im * 1e3,
                "train_wait_ms_per_step": train_wait,
                "infer_wait_ms_per_run": infer_wait,
                "loss_first": losses[0] if losses else None,
                "loss_last": losses[-1] if losses else None,
            }
        )
    )


if __name__ == "__main__":
    main()

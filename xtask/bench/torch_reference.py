#!/usr/bin/env python3
"""PyTorch reference for `cargo xtask bench-train`: the very networks, initial weights and
data of crates/nas-core/examples/bench_train.rs, trained and timed the same way, on CPU.

For each network DIR/<net>/ holds graph.json (our IR, `nas_graph::Graph` as JSON) and
tensors.json + tensors.bin (named little-endian f32 tensors: the initial weights `n{id}.*`,
the normalized batch `input`, its `labels` and our ONNX Runtime inference `logits` on the
initial weights). This script interprets the IR as a torch module (semantics of
crates/nas-graph/src/ir.rs and onnx/export.rs), loads the weights, checks that its eval-mode
logits equal ours within 1e-3 relative (exit status 3 otherwise), then times the training step
(forward, cross-entropy, backward, SGD lr 0.1 Nesterov momentum 0.9, weight decay 5e-4 on conv
and linear weights only, `loss.item()` and the correct count read back every step), recording
every loss, and inference (eval mode, no_grad) on the same batch with the same threads.

With --epoch, DIR/epoch/ holds the NB201 network, its initial weights and the raw training
images, labels and normalization: one epoch of shuffled, gathered, normalized batches of 256.

Prints one line of JSON per network (and one for the epoch) on stdout; progress on stderr.
"""

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CHECK_RTOL = 1e-3


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load_tensors(directory):
    with open(os.path.join(directory, "tensors.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(directory, manifest["file"]), "rb") as f:
        raw = bytearray(f.read())
    if sys.byteorder != "little":
        raise SystemExit("tensors.bin is little-endian; this machine is not")
    out = {}
    for t in manifest["tensors"]:
        n = 1
        for d in t["shape"]:
            n *= d
        flat = torch.frombuffer(raw, dtype=torch.float32, count=n, offset=t["offset"])
        out[t["name"]] = flat.reshape(t["shape"]).clone()
    return out


def pair(v):
    return (int(v[0]), int(v[1]))


class AnyBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over axis 1 of [N, C] or [N, C, H, W] (the IR's BatchNorm takes either)."""

    def _check_input_dim(self, input):
        if input.dim() not in (2, 4):
            raise ValueError(f"BatchNorm expects [N, C] or [N, C, H, W], got {tuple(input.shape)}")


class IrNet(nn.Module):
    """Runs a `nas_graph::Graph`: nodes in topological order, node 0 the input."""

    def __init__(self, graph, tensors):
        super().__init__()
        # A node is {"op": {"op": kind, ...attributes}, "inputs": [...]}: keep the op objects.
        self.nodes = [dict(node["op"], inputs=node["inputs"]) for node in graph["nodes"]]
        self.output = graph["output"]
        self.layers = nn.ModuleDict()
        self.live = self._reachable()
        for i, node in enumerate(self.nodes):
            op = node["op"]
            key = f"n{i}"
            if op == "conv2d":
                w = tensors[f"n{i}.weight"]
                groups = node["groups"]
                conv = nn.Conv2d(
                    w.shape[1] * groups,
                    node["out_channels"],
                    pair(node["kernel"]),
                    stride=pair(node["stride"]),
                    padding=pair(node["padding"]),
                    dilation=pair(node["dilation"]),
                    groups=groups,
                    bias=node["bias"],
                )
                self.layers[key] = conv
            elif op == "linear":
                w = tensors[f"n{i}.weight"]
                self.layers[key] = nn.Linear(w.shape[1], node["out_features"], bias=node["bias"])
            elif op == "batch_norm":
                c = tensors[f"n{i}.scale"].shape[0]
                # PyTorch's convention is ours: running = (1 - m) running + m batch, var unbiased.
                self.layers[key] = AnyBatchNorm(c, eps=node["eps"], momentum=node["momentum"])
        self.load(tensors)

    def _reachable(self):
        live = {self.output}
        for i in range(len(self.nodes) - 1, -1, -1):
            if i in live:
                live.update(self.nodes[i]["inputs"])
        return live

    def load(self, tensors):
        with torch.no_grad():
            for i, node in enumerate(self.nodes):
                key = f"n{i}"
                if node["op"] in ("conv2d", "linear"):
                    m = self.layers[key]
                    m.weight.copy_(tensors[f"{key}.weight"])
                    if m.bias is not None:
                        m.bias.copy_(tensors[f"{key}.bias"])
                elif node["op"] == "batch_norm":
                    m = self.layers[key]
                    m.weight.copy_(tensors[f"{key}.scale"])
                    m.bias.copy_(tensors[f"{key}.bias"])
                    m.running_mean.copy_(tensors[f"{key}.mean"])
                    m.running_var.copy_(tensors[f"{key}.var"])

    def decay_groups(self, weight_decay):
        """Conv and linear weights decay; biases and BatchNorm parameters do not."""
        decay, no_decay = [], []
        for key, m in self.layers.items():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                decay.append(m.weight)
                if m.bias is not None:
                    no_decay.append(m.bias)
            else:
                no_decay.extend([m.weight, m.bias])
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def forward(self, x):
        values = [None] * len(self.nodes)
        values[0] = x
        for i, node in enumerate(self.nodes):
            if i == 0 or i not in self.live:
                continue
            op = node["op"]
            ins = [values[j] for j in node["inputs"]]
            a = ins[0] if ins else None
            if op in ("conv2d", "linear", "batch_norm"):
                y = self.layers[f"n{i}"](a)
            elif op == "relu":
                y = F.relu(a)
            elif op == "relu6":
                y = F.relu6(a)
            elif op == "silu":
                y = F.silu(a)
            elif op == "gelu":
                y = F.gelu(a)  # exact (erf), as the export writes it
            elif op == "sigmoid":
                y = torch.sigmoid(a)
            elif op == "add":
                y = ins[0]
                for t in ins[1:]:
                    y = y + t
            elif op == "concat":
                y = torch.cat(ins, dim=1)
            elif op == "avg_pool":
                y = F.avg_pool2d(
                    a,
                    pair(node["kernel"]),
                    pair(node["stride"]),
                    pair(node["padding"]),
                    count_include_pad=node["count_include_pad"],
                )
            elif op == "max_pool":
                y = F.max_pool2d(a, pair(node["kernel"]), pair(node["stride"]), pair(node["padding"]))
            elif op == "global_avg_pool":
                y = a.mean(dim=(2, 3))
            elif op == "flatten":
                y = a.flatten(1)
            elif op == "identity":
                y = a
            elif op == "dropout":
                y = F.dropout(a, node["p"], self.training)
            elif op == "zero":
                y = torch.zeros_like(a)
            else:
                raise SystemExit(
                    f"graph.json: node {i} has op `{op}`, which this interpreter does not know"
                )
            values[i] = y
        return values[self.output]


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


def make_optimizer(model):
    return torch.optim.SGD(model.decay_groups(5e-4), lr=0.1, momentum=0.9, nesterov=True)


def train_step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    # Like the ONNX step, a parameter without gradient (behind a Zero) still decays.
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
    opt.step()
    value = loss.item()
    correct = (logits.detach().argmax(1) == y).sum().item()
    return value, correct


def bench_net(directory, net, a):
    with open(os.path.join(directory, "graph.json")) as f:
        graph = json.load(f)
    tensors = load_tensors(directory)
    x = tensors["input"].contiguous()
    y = tensors["labels"].round().long()
    batch = x.shape[0]
    torch.manual_seed(a.seed)
    model = IrNet(graph, tensors)

    # The interpreter must compute what our exported model computes.
    model.eval()
    with torch.no_grad():
        logits = model(x)
    ours = tensors["logits"]
    scale = max(ours.abs().max().item(), 1e-6)
    rel = (logits - ours).abs().max().item() / scale
    if not rel <= CHECK_RTOL:
        raise SystemExit(
            f"[{net}] PyTorch's eval-mode logits differ from our ONNX Runtime logits by {rel:.3g} "
            f"(max |diff| / max |ours|), above {CHECK_RTOL}: the IR interpreter in {__file__} "
            f"does not match crates/nas-graph/src/onnx/export.rs for this graph ({directory}/graph.json)"
        )
    log(f"[{net}] interpreter check: eval logits match ours within {rel:.2e} relative")

    # The loss is permutation-invariant (BatchNorm's batch statistics included), so our
    # trainer's per-step shuffle of the one-batch data set does not change it.
    probe = copy.deepcopy(model).train()
    perm = torch.randperm(batch, generator=torch.Generator().manual_seed(a.seed))
    with torch.no_grad():
        l0 = F.cross_entropy(probe(x), y).item()
        l1 = F.cross_entropy(probe(x[perm]), y[perm]).item()
    del probe

    opt = make_optimizer(model)
    model.train()
    losses = []
    for _ in range(a.warmup):
        losses.append(train_step(model, opt, x, y)[0])
    train_ms = []
    wait = run_queue_wait_ns()
    for _ in range(a.steps):
        t = time.perf_counter()
        loss, _ = train_step(model, opt, x, y)
        train_ms.append((time.perf_counter() - t) * 1e3)
        losses.append(loss)
    train_wait = wait_ms_per(wait, a.steps)

    model.eval()

    def infer():
        t = time.perf_counter()
        with torch.no_grad():
            out = model(x)
        ms = (time.perf_counter() - t) * 1e3
        assert out.shape == (batch, 10)
        return ms

    for _ in range(a.warmup):
        infer()
    wait = run_queue_wait_ns()
    infer_ms = [infer() for _ in range(a.steps)]
    infer_wait = wait_ms_per(wait, a.steps)

    tm, tmin, tp90 = summarize(train_ms)
    im, imin, ip90 = summarize(infer_ms)
    log(f"[{net}] train: {tm:.2f} ms/step ({batch / tm * 1e3:.0f} img/s); inference: {im:.3f} ms")
    return {
        "kind": "network",
        "net": net,
        "batch": batch,
        "steps": a.steps,
        "warmup": a.warmup,
        "check_rel_diff": rel,
        "permutation_loss_diff": abs(l0 - l1),
        "train_ms_median": tm,
        "train_ms_min": tmin,
        "train_ms_p90": tp90,
        "train_img_s": batch / tm * 1e3,
        "infer_ms_median": im,
        "infer_ms_min": imin,
        "infer_ms_p90": ip90,
        "infer_img_s": batch / im * 1e3,
        "train_wait_ms_per_step": train_wait,
        "infer_wait_ms_per_run": infer_wait,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "losses": losses,
    }


def bench_epoch(directory, a):
    with open(os.path.join(directory, "graph.json")) as f:
        graph = json.load(f)
    tensors = load_tensors(directory)
    images = tensors["images"]
    labels = tensors["labels"].round().long()
    c = images.shape[1]
    mean = tensors["mean"].reshape(1, c, 1, 1)
    std = tensors["std"].reshape(1, c, 1, 1)
    torch.manual_seed(a.seed)
    model = IrNet(graph, tensors).train()
    opt = make_optimizer(model)
    n = images.shape[0]
    batch = 256
    steps = n // batch
    log(f"[epoch] PyTorch: one epoch of {steps} steps of batch {batch} ...")
    wait = run_queue_wait_ns()
    t = time.perf_counter()
    # Shuffle, gather and normalize per batch, as our trainer does.
    order = torch.randperm(n)
    loss_sum, correct = 0.0, 0
    for s in range(steps):
        idx = order[s * batch : (s + 1) * batch]
        xb = (images[idx] - mean) / std
        loss, hits = train_step(model, opt, xb, labels[idx])
        loss_sum += loss
        correct += hits
    seconds = time.perf_counter() - t
    log(f"[epoch] PyTorch: {seconds:.1f} s, loss {loss_sum / steps:.4f}")
    return {
        "kind": "epoch",
        "net": "nb201-mnist",
        "images": n,
        "batch": batch,
        "steps": steps,
        "seconds": seconds,
        "train_loss": loss_sum / steps,
        "train_accuracy": correct / (steps * batch),
        "wait_ms_per_step": wait_ms_per(wait, steps),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", default="results/bench-train", help="what bench_train wrote")
    p.add_argument("--nets", default="", help="comma-separated networks (folders of --dir)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epoch", action="store_true")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    common = {
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "threads": torch.get_num_threads(),
    }
    for net in [n for n in a.nets.split(",") if n]:
        report = bench_net(os.path.join(a.dir, net), net, a)
        print(json.dumps({**common, **report}), flush=True)
    if a.epoch:
        report = bench_epoch(os.path.join(a.dir, "epoch"), a)
        print(json.dumps({**common, **report}), flush=True)


if __name__ == "__main__":
    main()

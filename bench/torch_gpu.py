"""Distillation throughput of the torch engine on one GPU: a Llama-3.2-1B-shaped teacher (random weights) and its
`--kv-ratio 6.4 --rope-dim 32` MLA student (r_kv 128, d_r 32, d_nope 32, d_v 64), seq 2048 × batch 4, bf16 autocast,
the teacher frozen in bf16, AdamW on every student parameter, KL in 1024-row chunks: the exact step of
`mla distill --engine torch` (mla_torch.distill.micro_step + clipping + AdamW). Prints tokens/s against the reference
29,300 tokens/s (plain PyTorch eager on one H100 for nearly these shapes; the goal is ≥ 1.2×).

  PYTHONPATH=python python3 bench/torch_gpu.py [--steps 10] [--warmup 3] [--seq 2048] [--batch 4] [--grad-checkpoint]
      [--compile] [--teacher-device same|own-gpu|cpu] [--model llama-3.2-1b]
      [--small --device cpu   (a CPU smoke test of the same code path)]
Output: a table and one JSON line."""

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from types import SimpleNamespace

import torch

sys.dont_write_bytecode = True  # no __pycache__ beside the benchmarks
sys.path.insert(0, os.path.dirname(__file__))
from torch_shapes import configs, tensors  # noqa: E402
from mla_torch.distill import Check, Losses, make_optimizer, micro_step  # noqa: E402
from mla_torch.model import Model, _SDPA  # noqa: E402

REFERENCE = 29300


def random_weights(cfg, dtype, device, gen):
    w = {}
    for name, shape in tensors(cfg):
        if len(shape) == 1:
            w[name] = torch.ones(shape, dtype=dtype, device=device)
        else:
            w[name] = (torch.randn(shape, generator=gen, device="cpu") * 0.02).to(device=device, dtype=dtype)
    return w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3.2-1b")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--grad-checkpoint", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--kl-chunk", type=int, default=1024)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--teacher-device", default="same", choices=["same", "own-gpu", "cpu"])
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_gpu.py: torch.cuda.is_available() is false (use --small --device cpu for a smoke test)")
    if a.small:
        a.seq, a.batch = min(a.seq, 128), min(a.batch, 2)
    dev = torch.device(a.device)
    bf16 = dev.type == "cuda"
    if bf16:
        torch.backends.cuda.matmul.allow_tf32 = True
    gen = torch.Generator().manual_seed(0)
    tcfg, scfg = configs(a.model, small=a.small)
    tdev = {"same": dev, "cpu": torch.device("cpu"), "own-gpu": torch.device("cuda", 1)}[a.teacher_device]
    teacher = Model(tcfg, random_weights(tcfg, torch.bfloat16 if bf16 else torch.float32, tdev, gen), trainable=set())
    student = Model(scfg, random_weights(scfg, torch.float32, dev, gen), grad_checkpoint=a.grad_checkpoint)
    params = [p for _, p in student.named_weights()]
    opt = make_optimizer(params, 0.0, dev.type)
    hidden = torch.compile(student.hidden) if a.compile and hasattr(torch, "compile") else student.hidden
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else nullcontext
    tamp = (lambda: torch.autocast(tdev.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    apart = a.teacher_device != "same"
    # The job's view of itself that micro_step reads (mla_torch.distill.Job).
    job = SimpleNamespace(teacher=teacher, student=student, hidden=hidden, losses=Losses(a.kl_chunk), amp=amp, tamp=tamp,
                          dev=dev, tdev=tdev, t_head=teacher.head().detach().to(dev).clone() if apart else teacher.head())
    check = Check("bench", a.seq, lambda b, t: f"row {b}, position {t}", "teacher", "student", "bench")
    V = scfg["vocabSize"]
    n = a.seq * a.batch

    def step():
        for p in params:
            p.grad = None
        ids = torch.randint(0, V, (a.batch, a.seq + 1), generator=gen).to(dev)
        x, y = ids[:, :-1].contiguous(), ids[:, 1:].reshape(-1)
        micro_step(job, x, y, 1.0, 1.0, 0.0, 1.0 / n, check)
        gn = torch.sqrt(sum(p.grad.float().pow(2).sum() for p in params))
        for p in params:  # clip at 1 without a host sync (the job syncs once per step for its log line)
            p.grad.mul_(torch.clamp(1.0 / gn, max=1.0))
        for g in opt.param_groups:
            g["lr"] = 1e-4
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(a.warmup):
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    for _ in range(a.steps):
        step()
    sync()
    secs = time.time() - t0
    tps = n * a.steps / secs
    peak = torch.cuda.max_memory_allocated() / 1e9 if dev.type == "cuda" else float("nan")
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print("| model | device | teacher | seq × batch | tokens/s | reference | ratio | peak GB (student GPU) | sdpa | grad ckpt | compile |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {a.model}{' (small)' if a.small else ''} | {name} | {tdev} | {a.seq} × {a.batch} | {tps:,.0f} | {REFERENCE:,} | "
          f"{tps / REFERENCE:.2f}× | {peak:.1f} | {_SDPA is not None and dev.type == 'cuda'} | {a.grad_checkpoint} | {a.compile and hasattr(torch, 'compile')} |")
    print(json.dumps({"bench": "torch_gpu", "model": a.model, "small": a.small, "device": name, "seq": a.seq,
                      "batch": a.batch, "tokens_per_s": tps, "reference": REFERENCE, "ratio": tps / REFERENCE,
                      "peak_gb": peak, "teacher_device": a.teacher_device, "torch": torch.__version__}))


if __name__ == "__main__":
    main()

"""GPU memory of `mla distill --engine torch` per model size, from parameter, optimizer and activation bytes
(the arithmetic behind the README's table: an estimate, not a measurement). Run: python3 bench/torch_memory.py
[--seq 2048] [--batch 4] [--kl-chunk 1024] [--gpu-gb 80] [--detail]

  student: f32 master weights 4 B/param; trained parameters add f32 gradients 4 B + AdamW m, v 8 B
  teacher: bf16, frozen, no gradients: 2 B/param
  activations kept for the backward (bf16 autocast, SDPA/flash attention, so no T×T scores are stored), per token per
    layer ≈ 2·(10·C + 4·I) + 4·C bytes (bf16 inputs of every matmul and norm, the f32 residual); with --grad-checkpoint
    only the f32 layer input, 4·C, plus one layer's full set during its recomputation
  loss: --kl-chunk rows at a time: ≈ 6 f32 (rows, V) temporaries (both models' logits, log-softmaxes, their product)
  plus the CUDA context and allocator slack: ≈ 3 GB per GPU.
  --teacher-device own-gpu (each process: student on one GPU, teacher on the next): the student's GPU keeps a bf16 copy
    of the teacher's head (2·V·C) and the teacher's bf16 final hidden states (2·N·C) instead of the teacher; the
    teacher's GPU holds its weights, one layer's transient activations without gradients (≈ 2·N·(3·I + 4·C)) and its
    hidden states."""

import argparse
import sys
import os

sys.dont_write_bytecode = True  # no __pycache__ beside the benchmarks
sys.path.insert(0, os.path.dirname(__file__))
from torch_shapes import SHAPES, configs, count  # noqa: E402

GB = 1e9


def estimate(name, seq, batch, chunk=1024, checkpoint=False, scope="all", teacher_apart=False):
    teacher, student = configs(name)
    V, C, I, L = student["vocabSize"], student["hiddenSize"], student["intermediateSize"], student["numLayers"]
    n_s = count(student)
    n_t = count(teacher)
    trained = n_s if scope == "all" else count(student, lambda n: ".self_attn." in n)
    N = seq * batch
    per_tok_layer = 2 * (10 * C + 4 * I) + 4 * C
    act = N * L * 4 * C + N * per_tok_layer if checkpoint else N * L * per_tok_layer
    loss = 6 * 4 * chunk * V
    optim = 12 * trained
    if teacher_apart:
        weights = 4 * n_s + 2 * V * C + 2 * N * C  # + the teacher's head copy and its hidden states
        teacher_gpu = 2 * n_t + 2 * N * (3 * I + 4 * C) + 2 * N * C + 3 * GB
    else:
        weights = 4 * n_s + 2 * n_t
        teacher_gpu = 0
    total = weights + optim + act + loss + 3 * GB
    return dict(model=name, student_params=n_s, teacher_params=n_t, trained=trained, weights=weights, optim=optim,
                act=act, loss=loss, total=total, teacher_gpu=teacher_gpu)


CONFIGS = [("all", False), ("all", True), ("attention", False), ("attention", True)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--kl-chunk", type=int, default=1024)
    ap.add_argument("--gpu-gb", type=float, default=80)
    ap.add_argument("--detail", action="store_true", help="one row per configuration with every term")
    a = ap.parse_args()
    cap = a.gpu_gb * GB
    print(f"Estimate (parameter/activation arithmetic, not measured): seq {a.seq} × batch {a.batch} per process, bf16 "
          f"autocast, --kl-chunk {a.kl_chunk}; GB = 1e9 bytes; fits = ≤ {a.gpu_gb:g} GB per GPU")
    if a.detail:
        print("| model | student / teacher params | train | checkpointing | teacher | weights | grads + AdamW (12 B) | activations | loss chunk | student GPU (+3 GB) | teacher GPU |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name in SHAPES:
            for scope, ck in CONFIGS:
                for apart in (False, True):
                    e = estimate(name, a.seq, a.batch, a.kl_chunk, ck, scope, apart)
                    print(f"| {name} | {e['student_params'] / 1e9:.2f}B / {e['teacher_params'] / 1e9:.2f}B | {scope} | "
                          f"{'yes' if ck else 'no'} | {'own GPU' if apart else 'same GPU'} | {e['weights'] / GB:.1f} | "
                          f"{e['optim'] / GB:.1f} | {e['act'] / GB:.1f} | {e['loss'] / GB:.1f} | {e['total'] / GB:.1f} | "
                          f"{e['teacher_gpu'] / GB:.1f} |")
        return
    head = ["`--train all`", "`--train all --grad-checkpoint`", "`--train attention`", "`--train attention --grad-checkpoint`"]
    print("| model (student / teacher params) | teacher | " + " | ".join(head) + " |")
    print("|---|---|" + "---:|" * len(head))

    def cell(e):
        ok = e["total"] <= cap and e["teacher_gpu"] <= cap
        t = f" + {e['teacher_gpu'] / GB:.0f}" if e["teacher_gpu"] else ""
        return f"{e['total'] / GB:.0f}{t} GB: {'fits' if ok else 'no'}"

    for name in SHAPES:
        for apart in (False, True):
            es = [estimate(name, a.seq, a.batch, a.kl_chunk, ck, scope, apart) for scope, ck in CONFIGS]
            e0 = es[0]
            label = f"{name} ({e0['student_params'] / 1e9:.2f}B / {e0['teacher_params'] / 1e9:.2f}B)" if not apart else ""
            where = "`--teacher-device own-gpu` (2 GPUs)" if apart else "same GPU"
            print(f"| {label} | {where} | " + " | ".join(cell(e) for e in es) + " |")


if __name__ == "__main__":
    main()

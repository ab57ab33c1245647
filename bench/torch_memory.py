"""GPU memory of `mla distill --engine torch` per model size, from parameter, optimizer and activation bytes
(the arithmetic behind the README's table). Run: python3 bench/torch_memory.py [--seq 2048] [--batch 4]

  student: f32 master weights 4 B/param; trained parameters add f32 gradients 4 B + AdamW m, v 8 B
  teacher: bf16, frozen, no gradients: 2 B/param
  activations kept for the backward (bf16 autocast, SDPA/flash attention, so no T×T scores are stored), per token per
    layer ≈ 2·(10·C + 4·I) + 4·C bytes (bf16 inputs of every matmul and norm, the f32 residual); with --grad-checkpoint
    only the f32 layer input, 4·C, plus one layer's full set during its recomputation
  loss: --kl-chunk rows at a time: ≈ 6 f32 (rows, V) temporaries (both models' logits, log-softmaxes, their product)
  plus the CUDA context and allocator slack: ≈ 3 GB."""

import argparse
import sys
import os

sys.dont_write_bytecode = True  # no __pycache__ beside the benchmarks
sys.path.insert(0, os.path.dirname(__file__))
from torch_shapes import SHAPES, configs, count  # noqa: E402

GB = 1e9


def estimate(name, seq, batch, chunk=1024, checkpoint=False, scope="all"):
    teacher, student = configs(name)
    V, C, I, L = student["vocabSize"], student["hiddenSize"], student["intermediateSize"], student["numLayers"]
    n_s = count(student)
    n_t = count(teacher)
    trained = n_s if scope == "all" else count(student, lambda n: ".self_attn." in n)
    weights = 4 * n_s + 2 * n_t
    optim = 12 * trained
    N = seq * batch
    per_tok_layer = 2 * (10 * C + 4 * I) + 4 * C
    act = N * L * 4 * C + N * per_tok_layer if checkpoint else N * L * per_tok_layer
    loss = 6 * 4 * chunk * V
    total = weights + optim + act + loss + 3 * GB
    return dict(model=name, student_params=n_s, teacher_params=n_t, trained=trained, weights=weights, optim=optim,
                act=act, loss=loss, total=total)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    a = ap.parse_args()
    print(f"seq {a.seq} × batch {a.batch} per GPU, bf16 autocast, --kl-chunk 1024; GB = 1e9 bytes")
    print("| model | student / teacher params | train | checkpointing | weights (4 B student + 2 B teacher) | grads + AdamW (12 B) | activations | loss chunk | total (+3 GB) | one 80 GB GPU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in SHAPES:
        for scope in ("all", "attention"):
            for ck in (False, True):
                e = estimate(name, a.seq, a.batch, checkpoint=ck, scope=scope)
                fits = "fits" if e["total"] <= 80 * GB else "no"
                print(f"| {name} | {e['student_params'] / 1e9:.2f}B / {e['teacher_params'] / 1e9:.2f}B | {scope} | {'yes' if ck else 'no'} | "
                      f"{e['weights'] / GB:.1f} | {e['optim'] / GB:.1f} | {e['act'] / GB:.1f} | {e['loss'] / GB:.1f} | {e['total'] / GB:.1f} | {fits} |")


if __name__ == "__main__":
    main()

"""Non-finite stops of python/mla_torch/distill.py (run by test/torch-checks.test.ts, one interpreter for all cases):
the chunked loss names the first non-finite logit of the teacher, then of the student, by step, micro-batch, row,
position and column, across chunk boundaries; a KL that overflows with finite logits is named as the loss; every
message keeps its {field} references for the TypeScript side to render as flags. Prints "ok N" per case."""

import sys

import torch

from mla_torch.distill import Check, Losses, NonFiniteError

torch.manual_seed(0)
B, T, C, V = 2, 7, 6, 11
N = B * T


def case(name, s_hidden, t_hidden, want, kl_w=1.0, ce_w=0.0, s_head=None, t_head=None):
    s_head = torch.randn(V, C) if s_head is None else s_head
    t_head = torch.randn(V, C) if t_head is None else t_head
    s_hidden = s_hidden.clone().requires_grad_(True)
    check = Check("distill", T, lambda b, t: f"step 3, micro-batch 2, row {b}, position {t}", "THINT {lr}", "SHINT {warmup}",
                  "step 3; stopped")
    tgt = torch.randint(0, V, (N,))
    try:
        Losses(4).run(s_hidden, s_head, t_hidden, t_head, tgt, 2.0, kl_w, ce_w, 1.0 / N, True, check)
    except NonFiniteError as e:
        assert str(e) == want, f"{name}:\n got  {e}\n want {want}"
        assert s_hidden.grad is None, f"{name}: the body's backward ran after a non-finite loss"
        print(f"ok {name}", flush=True)
        return
    raise AssertionError(f"{name}: no NonFiniteError")


h = torch.randn(N, C)
# Row 9 = batch row 1, position 2, in the third chunk of 4 rows: the chunk offset must be added back.
t_bad = h.clone()
t_bad[9, 3] = float("nan")
case("teacher NaN", torch.randn(N, C), t_bad,
     "distill: non-finite logits from the teacher (NaN at step 3, micro-batch 2, row 1, position 2, column 0); THINT {lr}",
     t_head=torch.ones(V, C))
# The student's +Inf in one column of its head (rows 5.. are finite in the teacher): named after the teacher's check.
s_head = torch.randn(V, C)
s_head[7] = 3e38
s_hidden = torch.randn(N, C).abs() + 1
case("student +Inf", s_hidden, h,
     "distill: non-finite logits from the student (+Inf at step 3, micro-batch 2, row 0, position 0, column 7); SHINT {warmup}",
     s_head=s_head)
# Finite logits whose spread overflows log_softmax in float32: a KL of +Inf, named as the loss.
s_head = torch.zeros(V, C)
s_head[0, 0], s_head[1, 0] = 1e38, -1e38
s_hidden = torch.zeros(N, C)
s_hidden[:, 0] = 3.0
case("KL +Inf", s_hidden, h, "distill: the KL loss is +Inf (step 3; stopped)", s_head=s_head, t_head=torch.zeros(V, C))
sys.exit(0)

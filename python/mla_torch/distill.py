"""The distillation job of src/train/distill.ts on torch: loss = klWeight·τ²·KL(p_teacher ‖ p_student) + ceWeight·CE
(means over tokens), AdamW (β 0.9/0.95, eps 1e-8, decoupled decay), linear warmup + cosine decay, global-norm
clipping, gradient accumulation, held-out evaluation, log.jsonl, atomic checkpoints and exact --resume, the final
student written as a model directory. Progress and log lines go to stdout as JSON lines (rank 0 only).

Memory: the teacher is frozen (no gradients; bf16 on --dtype bf16); the loss runs over row chunks of the final hidden
states (the student's detached into a leaf), so full (N, V) f32 logits of both models never exist at once: each chunk's
KL/CE is backpropagated into the leaf and the head, then the body backpropagates once from the leaf's gradient."""

import json
import math
import os
import shutil
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from . import safetensors as st
from .data import Batcher, read_shard, window_batches
from .dist import Dist
from .model import Model, assert_finite_weight, load_weights

BETAS = (0.9, 0.95)
EPS = 1e-8


class JobError(Exception):
    """A failure the user can act on: the message is printed as one line."""


def learning_rate(step, total, lr, warmup, min_ratio=0.1):
    """src/train/optimizer.ts learningRate: linear warmup to lr, then cosine decay to min_ratio·lr at total."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


# Whether --train attention trains a layer of each kind (src/train/distill.ts TRAINS_ATTENTION): converted attention
# (MLA) trains, the teacher's own (GQA/MHA, a hybrid's kept layers) stays.
TRAINS_ATTENTION = {"gqa": False, "mla": True}


def trainable_names(cfg, names, scope):
    """Attention of converted layers (TRAINS_ATTENTION), or everything (src/train/distill.ts trainableNames)."""
    if scope == "all":
        return set(names)
    pre = [f"model.layers.{i}.self_attn." for i, a in enumerate(cfg["layers"]) if TRAINS_ATTENTION[a["kind"]]]
    return {n for n in names if any(n.startswith(p) for p in pre)}


def emit(obj):
    print(json.dumps(obj), flush=True)


def make_optimizer(params, wd, device):
    kw = dict(lr=0.0, betas=BETAS, eps=EPS, weight_decay=wd)
    if device == "cuda":
        try:
            return torch.optim.AdamW(params, fused=True, **kw)
        except (TypeError, RuntimeError):
            pass
    try:
        # The single-tensor loop: the same arithmetic as the TS adamw kernel, element by element.
        return torch.optim.AdamW(params, foreach=False, **kw)
    except TypeError:
        return torch.optim.AdamW(params, **kw)


class NonFiniteError(JobError):
    """A non-finite logit, loss, gradient or weight (src/model/finite.ts NonFiniteError): one line naming it."""


def non_finite_name(v):
    return "NaN" if v != v else ("+Inf" if v > 0 else "-Inf")


class Check:
    """What a non-finite message says (src/train/distill.ts): `context` ('distill' or 'distill eval'), T positions per
    row, `where(b, t)` the row's name, and the hints for the teacher's and the student's logits."""

    def __init__(self, context, T, where, teacher_hint, student_hint, loss_detail=None):
        self.context, self.T, self.where = context, T, where
        self.teacher_hint, self.student_hint, self.loss_detail = teacher_hint, student_hint, loss_detail

    def logits(self, who, x, r0):
        """Raise NonFiniteError at the first non-finite value of the logits chunk x (n, V) starting at row r0."""
        flat = x.reshape(-1)
        i = int((~torch.isfinite(flat)).nonzero()[0])
        row, col = r0 + i // x.shape[1], i % x.shape[1]
        hint = self.teacher_hint if who == "teacher" else self.student_hint
        raise NonFiniteError(f"{self.context}: non-finite logits from the {who} ({non_finite_name(float(flat[i]))} at "
                             f"{self.where(row // self.T, row % self.T)}, column {col}); {hint}")


class Losses:
    """KL/CE over row chunks (see the module docstring). All sums are over rows; the caller divides."""

    def __init__(self, chunk):
        self.chunk = chunk

    def run(self, s_hidden, s_head, t_hidden, t_head, targets, tau, kl_w, ce_w, scale, train, check):
        """Returns (kl_sum, ce_sum) tensors (detached, f32); with `train`, backpropagates
        scale·(kl_w·τ²·kl_sum + ce_w·ce_sum) into s_hidden's graph. Every chunk's logits of both models are checked
        finite (flags gathered on the device, one synchronisation per call), the teacher's first, then the student's,
        then the loss sums, each failure raised by `check` (a Check) before the body's backward."""
        leaf = s_hidden.detach().requires_grad_(train and s_hidden.requires_grad)
        kl_tot = torch.zeros((), dtype=torch.float32, device=s_hidden.device)
        ce_tot = torch.zeros((), dtype=torch.float32, device=s_hidden.device)
        N = leaf.shape[0]
        t_ok, s_ok = [], []
        for r0 in range(0, N, self.chunk):
            r1 = min(N, r0 + self.chunk)
            sl = F.linear(leaf[r0:r1], s_head).float()  # (n, V)
            with torch.no_grad():
                tl = F.linear(t_hidden[r0:r1], t_head).float()
            t_ok.append(torch.isfinite(tl).all())
            s_ok.append(torch.isfinite(sl.detach()).all())
            tg = targets[r0:r1]
            loss = None
            if kl_w > 0:
                ls = torch.log_softmax(sl / tau, -1)
                lt = torch.log_softmax(tl / tau, -1)
                kl = (lt.exp() * (lt - ls)).sum(-1)
                kl = kl[tg >= 0].sum() if not train else kl.sum()
                kl_tot += kl.detach()
                loss = kl * (kl_w * tau * tau * scale)
            if ce_w > 0 or not train:
                ce = F.cross_entropy(sl, tg, ignore_index=-1, reduction="sum")
                ce_tot += ce.detach()
                if ce_w > 0:
                    term = ce * (ce_w * scale)
                    loss = term if loss is None else loss + term
            if train and loss is not None and loss.requires_grad:
                loss.backward()
        flags = torch.stack(t_ok + s_ok + [torch.isfinite(kl_tot), torch.isfinite(ce_tot)]).tolist()
        if not all(flags):
            n = len(t_ok)
            for who, ok, hidden, head in (("teacher", flags[:n], t_hidden, t_head), ("student", flags[n:2 * n], leaf, s_head)):
                if not all(ok):
                    r0 = ok.index(False) * self.chunk
                    with torch.no_grad():
                        check.logits(who, F.linear(hidden[r0:r0 + self.chunk].detach(), head).float(), r0)
            if train:  # held-out evaluation checks its perplexity and KL instead (Job.evaluate)
                for what, w, ok in (("the KL loss", kl_w, flags[-2]), ("the cross-entropy loss", ce_w, flags[-1])):
                    v = float(kl_tot if what == "the KL loss" else ce_tot)
                    if w > 0 and not ok:
                        raise NonFiniteError(f"{check.context}: {what} is {non_finite_name(v)} ({check.loss_detail})")
        if train and leaf.grad is not None:
            s_hidden.backward(leaf.grad)
        return kl_tot, ce_tot


def micro_step(job, ids, tgt, tau, kl_w, ce_w, scale, check):
    """One micro-batch: teacher forward without gradients (on its own device when it has one; its final hidden states
    move to the student's), student forward, chunked KL/CE backpropagated with `scale` (1/(global rows·accum));
    returns the (kl_sum, ce_sum) of this rank's rows. ids (b, T), tgt (b·T)."""
    with job.tamp():
        with torch.no_grad():
            th = job.teacher.hidden(ids.to(job.tdev)).to(job.dev)
    with job.amp():
        sh = job.hidden(ids)
        return job.losses.run(sh, job.student.head(), th, job.t_head, tgt, tau, kl_w, ce_w, scale, True, check)


def compiled_or_eager(fn, note):
    """torch.compile(fn), or fn itself when compiling fails at the first call (torch.compile compiles lazily; a
    machine without a C++ toolchain or Python headers for inductor fails there, before anything ran): one note, then
    the eager module, which computes the same function."""
    compiled = torch.compile(fn)
    state = {"fn": None}

    def call(*args):
        if state["fn"] is None:
            try:
                out = compiled(*args)
                state["fn"] = compiled
                return out
            except Exception as e:  # noqa: BLE001 (any backend failure: fall back, saying why)
                why = (str(e).strip().splitlines() or [""])[0][:200]
                note(f"{{compile}}: torch.compile failed ({type(e).__name__}: {why}); running eager")
                state["fn"] = fn
        return state["fn"](*args)

    return call


TEACHER_HINT = "the teacher's forward pass overflowed {fmt} or met a non-finite weight (rerun with {{engine}} cpu to compare)"
FORWARD_HINT = "the forward pass overflowed {fmt} or met a non-finite weight (rerun with {{engine}} cpu to compare)"
LOWER_LR = "(lower {lr} or raise {warmup})"


class Job:
    def __init__(self, spec):
        self.spec = spec
        self.s = spec["settings"]
        self.out = spec["out"]
        self.device = spec["device"]
        self.dist = Dist(self.device)
        teacher_device = spec.get("teacher_device") or "same"
        if self.device == "cuda":
            if not torch.cuda.is_available():
                raise JobError("{device} cuda: torch.cuda.is_available() is false (no GPU or no CUDA build of torch)")
            # own-gpu: each process drives two GPUs, its student on the even one and its teacher on the odd one.
            per = 2 if teacher_device == "own-gpu" else 1
            need = per * int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
            if torch.cuda.device_count() < need:
                raise JobError(f"{{teacherDevice}} {teacher_device}: needs {need} GPUs ({per} per process), "
                               f"{torch.cuda.device_count()} visible")
            self.dev = torch.device("cuda", per * self.dist.local_rank)
            torch.cuda.set_device(self.dev)
        else:
            if teacher_device == "own-gpu":
                raise JobError("{teacherDevice} own-gpu: needs {device} cuda")
            self.dev = torch.device("cpu")
        if teacher_device == "same":
            self.tdev = self.dev
        elif teacher_device == "cpu":
            self.tdev = torch.device("cpu")
        elif teacher_device == "own-gpu":
            self.tdev = torch.device("cuda", self.dev.index + 1)
        else:
            raise JobError(f"{{teacherDevice}} {teacher_device!r}: expected same, cpu or own-gpu")
        # An explicit teacher device takes the separate path (its own head copy, hidden states moved) even when it is
        # the student's device, so the CPU tests exercise the code that runs across GPUs.
        self.teacher_apart = teacher_device != "same"
        if self.s["klWeight"] <= 0 and self.s["ceWeight"] <= 0:
            raise JobError("distill: {klWeight} and {ceWeight} are both 0: no loss to train on")
        if self.s["batch"] % self.dist.world:
            raise JobError(f"{{batch}} {self.s['batch']}: must be divisible by {{nproc}} {self.dist.world}")
        self.bf16 = spec["dtype"] == "bf16"
        self.amp = (lambda: torch.autocast(self.dev.type, dtype=torch.bfloat16)) if self.bf16 else nullcontext
        self.tamp = (lambda: torch.autocast(self.tdev.type, dtype=torch.bfloat16)) if self.bf16 else nullcontext
        fmt = "bfloat16" if self.bf16 else "float32"
        self.teacher_hint = TEACHER_HINT.format(fmt=fmt)
        self.forward_hint = FORWARD_HINT.format(fmt=fmt)
        self.losses = Losses(int(spec.get("kl_chunk") or 1024))
        self.checkpointed = bool(spec.get("resume"))

    def log_file(self):
        return os.path.join(self.out, "log.jsonl")

    def note(self, message):
        if self.dist.main:
            emit({"type": "note", "message": message})

    def stopped(self):
        """src/train/distill.ts stopped(): where the last good checkpoint is, if there is one."""
        if self.checkpointed:
            return f"stopped; the last good checkpoint stays in {os.path.join(self.out, 'checkpoint')}"
        return "stopped before the first checkpoint was written"

    def load(self):
        spec = self.spec
        tdtype = torch.bfloat16 if self.bf16 else torch.float32
        self.teacher = Model(spec["teacher"]["config"], load_weights(spec["teacher"], tdtype, self.tdev), trainable=set())
        self.teacher.eval()
        # The loss needs the teacher's head beside the student: a frozen copy when the teacher lives elsewhere, so only
        # the (N, C) hidden states cross devices, never (N, V) logits.
        self.t_head = self.teacher.head().detach().to(self.dev).clone() if self.teacher_apart else self.teacher.head()
        scfg = spec["student"]["config"]
        names = [t["name"] for t in spec["student"]["tensors"]]
        self.trainable = trainable_names(scfg, names, self.s["train"])
        self.cp_state = None
        if spec.get("resume"):
            # The TypeScript side chose the checkpoint (checkpoint/ or checkpoint.old/) and checked its state.json
            # against run.json; the student spec's files are that checkpoint's weights.
            self.cp_dir = spec["resume_checkpoint"]
            with open(os.path.join(self.cp_dir, "state.json")) as f:
                self.cp_state = json.load(f)
        w = load_weights(spec["student"], torch.float32, self.dev)
        self.student = Model(scfg, w, trainable=self.trainable, grad_checkpoint=bool(spec.get("grad_checkpoint")))
        self.params = [(n, self.student.p(n)) for n in names if n in self.trainable]
        self.opt = make_optimizer([p for _, p in self.params], self.s["weightDecay"], self.device)
        self.adam_step = 0
        if self.cp_state is not None:
            opt_file = os.path.join(self.cp_dir, "optimizer.safetensors")
            mom, meta = st.read_tensors(opt_file)
            self.adam_step = int(meta.get("adam_step", self.cp_state["step"]))
            for n, p in self.params:
                if f"m.{n}" not in mom or f"v.{n}" not in mom:
                    raise JobError(f"{{resume}}: optimizer state for {n} missing")
                for k in (f"m.{n}", f"v.{n}"):
                    assert_finite_weight(opt_file, k, mom[k])
                # The fused kernel keeps `step` on the device; the single-tensor loop wants it on the CPU.
                fused = bool(self.opt.defaults.get("fused"))
                step_t = torch.tensor(float(self.adam_step), dtype=torch.float32, device=self.dev if fused else "cpu")
                self.opt.state[p] = {
                    "step": step_t,
                    "exp_avg": mom[f"m.{n}"].to(self.dev, torch.float32).clone(),
                    "exp_avg_sq": mom[f"v.{n}"].to(self.dev, torch.float32).clone(),
                }
        self.hidden = self.student.hidden
        if self.spec.get("compile"):
            if hasattr(torch, "compile"):
                self.hidden = compiled_or_eager(self.student.hidden, self.note)
            else:
                # The exact fallback: the eager module the equivalence tests hold to the cpu engine.
                self.note(f"{{compile}}: torch {torch.__version__} has no torch.compile (torch >= 2.0); running eager")
        self.train = Batcher(read_shard(spec["train"]), self.s["seq"], self.s["batch"], self.s["seed"])
        self.eval_seqs = read_shard(spec["eval"])

    def evaluate(self, step):
        """Held-out perplexity of the student and mean KL(teacher ‖ student) per scored token (τ = 1); non-finite
        logits, perplexity or KL stop the run as the cpu engine does (src/train/distill.ts evaluate)."""
        nll = kl = 0.0
        n = 0
        after = "" if step == 0 else f"; at step {step} {LOWER_LR}; {self.stopped()}"
        with torch.no_grad():
            for ids, tgt in window_batches(self.eval_seqs, 8):
                ids, tgt = ids.to(self.dev), tgt.to(self.dev).reshape(-1)
                with self.amp():
                    sh = self.student.hidden(ids)
                with self.tamp():
                    th = self.teacher.hidden(ids.to(self.tdev)).to(self.dev)
                check = Check("distill eval", ids.shape[1], lambda b, t: f"batch row {b}, position {t}",
                              self.teacher_hint + after, self.forward_hint + after)
                with self.amp():
                    k, c = self.losses.run(sh, self.student.head(), th, self.t_head, tgt, 1.0, 1.0, 0.0, 1.0, False, check)
                kl += float(k)
                nll += float(c)
                n += int((tgt >= 0).sum())
        m = nll / n
        ppl = m if m != m else (math.exp(m) if m < 709 else math.inf)  # Math.exp of the TS side
        if not math.isfinite(ppl):
            raise NonFiniteError(f"distill eval: the student's perplexity is {non_finite_name(ppl)} "
                                 f"(mean NLL {nll / n:.6g} nats per token){after}")
        if not math.isfinite(kl / n):
            raise NonFiniteError(f"distill eval: the mean KL(teacher ‖ student) is {non_finite_name(kl / n)} (over {n} tokens){after}")
        return ppl, kl / n

    def write_log(self, lines):
        if self.dist.main:
            with open(self.log_file(), "w") as f:
                f.write("".join(json.dumps(l) + "\n" for l in lines))

    def emit_line(self, line):
        if self.dist.main:
            with open(self.log_file(), "a") as f:
                f.write(json.dumps(line) + "\n")
            emit({"type": "log", "line": line})

    def student_tensors(self):
        return [(n, self.student.p(n)) for n in self.student.names]

    def save_model_dir(self, d):
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(self.spec["student_config_json"])
        st.write_tensors(os.path.join(d, "model.safetensors"), self.student_tensors(), {"format": "pt"})
        for c in self.spec.get("copy_files", []):
            shutil.copyfile(c["from"], os.path.join(d, os.path.basename(c["name"])))

    def assert_finite_params(self, step):
        """Every trained parameter finite after the update of `step` (src/train/distill.ts assertFiniteParams): a
        checkpoint is only ever a good one."""
        ok = torch.stack([torch.isfinite(p).all() for _, p in self.params]).tolist() if self.params else []
        if all(ok):
            return
        n, p = self.params[ok.index(False)]
        flat = p.detach().reshape(-1)
        v = float(flat[int((~torch.isfinite(flat)).nonzero()[0])])
        raise NonFiniteError(f"distill: non-finite weight after the update at step {step} ({non_finite_name(v)} in {n}); "
                             f"not saved {LOWER_LR}; {self.stopped()}")

    def checkpoint(self, step, tokens):
        """DIR/checkpoint.new written whole, then swapped in by renames (src/train/checkpoint.ts)."""
        self.assert_finite_params(step)
        if self.dist.main:
            final = os.path.join(self.out, "checkpoint")
            fresh, old = final + ".new", final + ".old"
            shutil.rmtree(fresh, ignore_errors=True)
            self.save_model_dir(fresh)
            moments = []
            for n, p in self.params:
                s = self.opt.state.get(p, {})
                z = torch.zeros_like(p)
                moments.append((f"m.{n}", s.get("exp_avg", z)))
                moments.append((f"v.{n}", s.get("exp_avg_sq", z)))
            st.write_tensors(os.path.join(fresh, "optimizer.safetensors"), moments, {"adam_step": str(self.adam_step)})
            state = {"version": 1, "step": step, "tokens": tokens, "settings": self.s}
            with open(os.path.join(fresh, "state.json"), "w") as f:
                f.write(json.dumps(state, indent=2) + "\n")
            shutil.rmtree(old, ignore_errors=True)
            if os.path.exists(final):
                os.replace(final, old)
            os.replace(fresh, final)
            shutil.rmtree(old, ignore_errors=True)
        self.checkpointed = True
        self.dist.barrier()

    def run(self):
        s = self.s
        self.load()
        step = tokens = 0
        log = []
        if self.cp_state is not None:
            step, tokens = self.cp_state["step"], self.cp_state["tokens"]
            if os.path.exists(self.log_file()):
                with open(self.log_file()) as f:
                    for l in f:
                        try:
                            log.append(json.loads(l))
                        except ValueError:  # the torn last line a kill during an append leaves (run-files.ts readLog)
                            break
                log = [l for l in log if l["step"] <= step]
            self.write_log(log)
        else:
            self.write_log([])
        if self.dist.main:
            # The worker's pid, for whoever needs to signal it (the kill -9 test, an operator).
            with open(os.path.join(self.out, "torch", "worker.pid"), "w") as f:
                f.write(f"{os.getpid()}\n")
            emit({"type": "start", "step": step, "tokens": tokens, "world": self.dist.world, "device": str(self.dev),
                  "teacher_device": str(self.tdev), "torch": torch.__version__})
        if step == 0:
            ppl, kl = self.evaluate(0)
            self.emit_line({"step": 0, "tokens": 0, "eval_ppl": ppl, "eval_kl": kl})
        lo, hi = self.dist.rows(s["batch"])
        tau = s["temperature"]
        plist = [p for _, p in self.params]
        t0 = time.time()
        tokens0 = tokens
        while step < s["steps"]:
            for p in plist:
                p.grad = None
            acc = torch.zeros(3, dtype=torch.float64, device=self.dev)  # Σ loss_m, Σ kl_m/n_m, Σ ce_m/n_m
            step_tokens = 0
            # Finite teacher and student at step 0 (both evaluated), so later non-finite student logits mean divergence.
            s_hint = self.forward_hint if step == 0 else f"the student diverged at step {step} {LOWER_LR}"
            for micro in range(s["accum"]):
                ids, tgt = self.train.get(step, micro)
                n = ids.numel()
                ids, tgt = ids[lo:hi].to(self.dev), tgt[lo:hi].to(self.dev).reshape(-1)
                scale = 1.0 / (n * s["accum"])
                where = (lambda st_, m_: lambda b, t: f"step {st_ + 1}, micro-batch {m_ + 1}, row {lo + b}, position {t}")(step, micro)
                check = Check("distill", ids.shape[1], where, f"{self.teacher_hint}; {self.stopped()}",
                              f"{s_hint}; {self.stopped()}", f"step {step + 1}; {self.stopped()}")
                k, c = micro_step(self, ids, tgt, tau, s["klWeight"], s["ceWeight"], scale, check)
                k, c = k.double() / n, c.double() / n
                acc += torch.stack([s["klWeight"] * tau * tau * k + s["ceWeight"] * c, k, c])
                step_tokens += n
            self.dist.sum_grads(plist)
            self.dist.sum_(acc)
            loss_sum, kl_sum, ce_sum = acc.tolist()
            sq = [p.grad.float().pow(2).sum(dtype=torch.float64) for p in plist if p.grad is not None]
            gn = math.sqrt(float(torch.stack(sq).sum())) if sq else 0.0
            if not math.isfinite(loss_sum) or not math.isfinite(gn):
                raise NonFiniteError(
                    f"distill: non-finite {'gradient norm' if math.isfinite(loss_sum) else 'loss'} at step {step + 1} "
                    f"{LOWER_LR}; {self.stopped()}")
            if s["clip"] > 0 and gn > s["clip"]:
                for p in plist:
                    if p.grad is not None:
                        p.grad.mul_(s["clip"] / gn)
            lr = learning_rate(step, s["steps"], s["lr"], s["warmup"], s["minLrRatio"])
            for g in self.opt.param_groups:
                g["lr"] = lr
            self.opt.step()
            self.adam_step += 1
            step += 1
            tokens += step_tokens
            secs = time.time() - t0
            line = {"step": step, "tokens": tokens, "lr": lr, "loss": loss_sum / s["accum"], "kl": kl_sum / s["accum"]}
            if ce_sum:
                line["ce"] = ce_sum / s["accum"]
            line["grad_norm"] = gn
            line["tokens_per_s"] = round((tokens - tokens0) / max(secs, 1e-9))
            self.emit_line(line)
            if step % s["evalEvery"] == 0 or step == s["steps"]:
                ppl, kl = self.evaluate(step)
                self.emit_line({"step": step, "tokens": tokens, "eval_ppl": ppl, "eval_kl": kl})
            if step % s["checkpointEvery"] == 0 or step == s["steps"]:
                self.checkpoint(step, tokens)
        # DIR itself becomes a normal model directory (the final student).
        if self.dist.main:
            tmp = os.path.join(self.out, ".final.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self.save_model_dir(tmp)
            for f in ["config.json", "model.safetensors"] + [c["name"] for c in self.spec.get("copy_files", [])]:
                if os.path.exists(os.path.join(tmp, f)):
                    os.replace(os.path.join(tmp, f), os.path.join(self.out, f))
            shutil.rmtree(tmp, ignore_errors=True)
            with open(self.log_file()) as f:
                last = [json.loads(l) for l in f if l.strip() and "eval_ppl" in l][-1]
            emit({"type": "done", "eval_ppl": last["eval_ppl"], "eval_kl": last["eval_kl"], "tokens": tokens})
        self.dist.barrier()
        self.dist.close()

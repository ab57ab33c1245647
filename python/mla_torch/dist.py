"""Data parallelism across processes (torchrun / torch.distributed.run): gloo on CPU, nccl on GPU.
Every rank holds the whole student and teacher and takes its slice of each global batch's rows; gradients are summed
across ranks once per optimizer step (after all micro-batches: the equivalent of DDP with no_sync during
accumulation), in flat buckets, so the update equals the single-process one at the same global batch."""

import os

import torch
import torch.distributed as D


class Dist:
    def __init__(self, device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.on = self.world > 1
        if self.on:
            D.init_process_group("nccl" if device == "cuda" else "gloo")

    @property
    def main(self):
        return self.rank == 0

    def rows(self, batch):
        """This rank's slice [lo, hi) of a global batch of `batch` rows."""
        per = batch // self.world
        return self.rank * per, (self.rank + 1) * per

    def sum_(self, t):
        if self.on:
            D.all_reduce(t, op=D.ReduceOp.SUM)
        return t

    def sum_grads(self, params, bucket_elems=1 << 25):
        """Sum every gradient across ranks in flat buckets of about bucket_elems values."""
        if not self.on:
            return
        grads = [p.grad for p in params if p.grad is not None]
        i = 0
        while i < len(grads):
            group, n = [], 0
            while i < len(grads) and (not group or n + grads[i].numel() <= bucket_elems):
                group.append(grads[i])
                n += grads[i].numel()
                i += 1
            flat = torch.cat([g.reshape(-1) for g in group])
            D.all_reduce(flat, op=D.ReduceOp.SUM)
            off = 0
            for g in group:
                g.copy_(flat[off:off + g.numel()].view_as(g))
                off += g.numel()

    def barrier(self):
        if self.on:
            D.barrier()

    def close(self):
        if self.on:
            D.destroy_process_group()

"""Training and held-out data as src/train/data.ts and src/eval/perplexity.ts see it: token shards written by the
TypeScript side (tokens: int32 LE, offsets: int64 LE with n+1 entries), batches drawn by mulberry32 seeded with
(seed, step, micro) exactly as the TS Batcher, so both engines train on the same rows and a resumed run sees the
same batches."""

import os

import torch

M32 = 0xFFFFFFFF


def mulberry32(seed):
    """The uniform [0, 1) generator of src/tensor/rng.ts; every step is arithmetic mod 2³² (as Math.imul and the
    JS bit operators), so the stream is bit-identical."""
    a = seed & M32

    def rng():
        nonlocal a
        a = (a + 0x6D2B79F5) & M32
        t = a
        t = ((t ^ (t >> 15)) * (t | 1)) & M32
        t = (t ^ ((t + (((t ^ (t >> 7)) * (t | 61)) & M32)) & M32)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296.0

    return rng


def read_shard(prefix):
    """Sequences (list of 1-D int64 tensors) from PREFIX.tokens / PREFIX.offsets."""
    n_tok = os.path.getsize(prefix + ".tokens") // 4
    n_off = os.path.getsize(prefix + ".offsets") // 8
    tokens = _read(prefix + ".tokens", torch.int32, n_tok).long()
    offs = _read(prefix + ".offsets", torch.int64, n_off).tolist()
    return [tokens[offs[i]:offs[i + 1]] for i in range(n_off - 1)]


def _read(path, dtype, n):
    if n == 0:
        return torch.empty(0, dtype=dtype)
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=dtype)[:n]


class Batcher:
    """Rows (batch × T) for a step: each row a random full-length window of a random sequence (src/train/data.ts)."""

    def __init__(self, seqs, seq, batch, seed):
        self.seqs = [s for s in seqs if len(s) >= 2]
        if not self.seqs:
            raise ValueError("training data: no sequence of at least 2 tokens")
        self.seq, self.batch, self.seed = seq, batch, seed

    def get(self, step, micro=0):
        """(ids (B, T), targets (B, T)) with T = min(seq, shortest chosen sequence − 1)."""
        rng = mulberry32((self.seed * 1000003 + step * 131 + micro) % 4294967296)
        n = len(self.seqs)
        picks = [self.seqs[int(rng() * n)] for _ in range(self.batch)]
        T = min([self.seq + 1] + [len(s) for s in picks]) - 1
        ids = torch.empty(self.batch, T, dtype=torch.long)
        tgt = torch.empty(self.batch, T, dtype=torch.long)
        for b, s in enumerate(picks):
            off = int(rng() * (len(s) - T))
            ids[b] = s[off:off + T]
            tgt[b] = s[off + 1:off + T + 1]
        return ids, tgt


def window_batches(seqs, batch):
    """Consecutive equal-length sequences grouped up to `batch` rows: (ids (B, T), targets (B, T), −1 at the end)."""
    ws = [s for s in seqs if len(s) >= 2]
    i = 0
    while i < len(ws):
        T = len(ws[i])
        group = []
        while i < len(ws) and len(ws[i]) == T and len(group) < batch:
            group.append(ws[i])
            i += 1
        ids = torch.stack(group)
        tgt = torch.full_like(ids, -1)
        tgt[:, :-1] = ids[:, 1:]
        yield ids, tgt

"""The transformer of src/model/forward.ts (training path: whole sequences, no cache) for every ModelConfig:
GQA/MHA layers (optional q/k/v bias) and MLA layers (q_proj or q_a_proj → q_a_layernorm → q_b_proj, kv_a_proj_with_mqa
rows [latent | rope], optional latent norm and biases, per-layer ranks and rope frequencies), hybrids of both,
tied or untied head, 'half' or 'adjacent' rope pairing.
Legend: B batch, T positions, C hidden, H heads, Hkv kv heads, D head dim, R kv rank, Dr rope dims, Dn nope dims,
Dv value dims, V vocab, N = B·T rows. Parameters keep the HF / DeepSeek-V3 names of src/model/weights.ts."""

import math

import torch
import torch.nn.functional as F

from . import safetensors as st
from .llama2c import display_name, read_llama2c

# torch ≥ 2.0. Its default scale 1/√Dk is the one every layer here uses (GQA: 1/√D; MLA: 1/√(Dn+Dr)), so no
# `scale=` argument (torch ≥ 2.1) is needed. Used on CUDA (flash / memory-efficient kernels: no T×T scores kept);
# on the CPU the explicit math below stays, the exact path the equivalence tests hold to the cpu engine.
_SDPA = getattr(F, "scaled_dot_product_attention", None)


def rmsnorm(x, w, eps):
    """y = x / √(mean x² + eps) · w, statistics in f32 (as every backend)."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * w.float()).to(x.dtype)


def rope_tables(inv_freq, T, device):
    """cos, sin (T, P) of p·invFreq[j], computed in float64 (as the TS kernels) and rounded once to f32."""
    pos = torch.arange(T, dtype=torch.float64)
    ang = pos[:, None] * torch.tensor(inv_freq, dtype=torch.float64)[None, :]
    return torch.cos(ang).float().to(device), torch.sin(ang).float().to(device)


def rope(x, cos, sin, pairing, start=0):
    """Rotate pairs of x (B, T, H, Dtot) in columns [start, start+2P): 'half' pairs (start+j, start+P+j),
    'adjacent' pairs (start+2j, start+2j+1); y₁ = x₁cos − x₂sin, y₂ = x₁sin + x₂cos. cos, sin (T, P)."""
    P = cos.shape[-1]
    c = cos[None, :, None, :].to(x.dtype)
    s = sin[None, :, None, :].to(x.dtype)
    seg = x[..., start:start + 2 * P]
    if pairing == "half":
        x1, x2 = seg[..., :P], seg[..., P:]
        y = torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], -1)
    else:
        x1, x2 = seg[..., 0::2], seg[..., 1::2]
        y = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)
    parts = [p for p in (x[..., :start], y, x[..., start + 2 * P:]) if p.shape[-1] > 0]
    return torch.cat(parts, -1) if len(parts) > 1 else parts[0]


def attention(q, k, v, scale):
    """Causal softmax attention. q (B, T, H, Dk), k (B, T, Hkv, Dk), v (B, T, Hkv, Dv) → (B, T, H, Dv).
    Query head h reads kv head ⌊h·Hkv/H⌋ (GQA). SDPA when torch has it with `scale=`, else the exact math."""
    H, Hkv = q.shape[2], k.shape[2]
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H·, T, D)
    if Hkv != H:
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
    if _SDPA is not None and q.is_cuda and abs(scale * math.sqrt(q.shape[-1]) - 1) < 1e-12:
        o = _SDPA(q, k, v, is_causal=True)
    else:
        T = q.shape[2]
        s = torch.matmul(q, k.transpose(-1, -2)).float() * scale  # (B, H, T, T)
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
        p = torch.softmax(s.masked_fill(mask, float("-inf")), -1).to(v.dtype)
        o = torch.matmul(p, v)
    return o.transpose(1, 2)


def linear(x, w, b=None):
    return F.linear(x, w, b)


class Model(torch.nn.Module):
    """A ModelConfig (dict, camelCase as src/model/config.ts) and its parameters under their HF names."""

    def __init__(self, config, weights, trainable=None, grad_checkpoint=False):
        super().__init__()
        self.config = config
        self.names = list(weights.keys())
        self.grad_checkpoint = grad_checkpoint
        trainable = set(self.names) if trainable is None else trainable
        self._params = torch.nn.ParameterDict()
        for n, t in weights.items():
            self._params[n.replace(".", "__")] = torch.nn.Parameter(t, requires_grad=n in trainable)
        for i, l in enumerate(config["layers"]):
            if l["kind"] not in ATTENTION_KINDS:
                raise ValueError(f"layer {i}: attention kind {l['kind']!r} has no module here (mla_torch/model.py ATTENTION_KINDS)")
        self.inv_freq = [ATTENTION_KINDS[l["kind"]][0](config, l) for l in config["layers"]]
        self._tables = {}

    def p(self, name):
        return self._params[name.replace(".", "__")]

    def has(self, name):
        return name.replace(".", "__") in self._params

    def named_weights(self):
        return [(n, self.p(n)) for n in self.names]

    def head(self):
        return self.p("model.embed_tokens.weight") if self.config["tieEmbeddings"] else self.p("lm_head.weight")

    def tables(self, i, T, device):
        key = (i, T, str(device))
        if key not in self._tables:
            self._tables[key] = rope_tables(self.inv_freq[i], T, device)
        return self._tables[key]

    def hidden(self, ids):
        """Final normed hidden states (N, C) for ids (B, T): everything but the head (losses chunk over it)."""
        cfg = self.config
        B, T = ids.shape
        x = F.embedding(ids.reshape(-1), self.p("model.embed_tokens.weight"))  # (N, C)
        for i, a in enumerate(cfg["layers"]):
            if self.grad_checkpoint and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                x = checkpoint(self._layer, x, i, a, B, T, use_reentrant=False)
            else:
                x = self._layer(x, i, a, B, T)
        return rmsnorm(x, self.p("model.norm.weight"), cfg["rmsNormEps"])

    def forward(self, ids):
        """Logits (N, V) for ids (B, T)."""
        return linear(self.hidden(ids), self.head())

    def _layer(self, x, i, a, B, T):
        cfg = self.config
        pre = f"model.layers.{i}"
        h = rmsnorm(x, self.p(f"{pre}.input_layernorm.weight"), cfg["rmsNormEps"])
        att = ATTENTION_KINDS[a["kind"]][1](self, h, i, a, B, T)
        x = x + att
        h2 = rmsnorm(x, self.p(f"{pre}.post_attention_layernorm.weight"), cfg["rmsNormEps"])
        g = linear(h2, self.p(f"{pre}.mlp.gate_proj.weight"))
        u = linear(h2, self.p(f"{pre}.mlp.up_proj.weight"))
        return x + linear(F.silu(g) * u, self.p(f"{pre}.mlp.down_proj.weight"))

    def _gqa(self, h, i, a, B, T):
        H = self.config["numHeads"]
        Hkv, D = a["numKvHeads"], a["headDim"]
        p = f"model.layers.{i}.self_attn"
        bias = (lambda n: self.p(f"{p}.{n}.bias")) if a["qkvBias"] else (lambda n: None)
        q = linear(h, self.p(f"{p}.q_proj.weight"), bias("q_proj")).reshape(B, T, H, D)
        k = linear(h, self.p(f"{p}.k_proj.weight"), bias("k_proj")).reshape(B, T, Hkv, D)
        v = linear(h, self.p(f"{p}.v_proj.weight"), bias("v_proj")).reshape(B, T, Hkv, D)
        cos, sin = self.tables(i, T, h.device)
        pairing = self.config["ropePairing"]
        q, k = rope(q, cos, sin, pairing), rope(k, cos, sin, pairing)
        o = attention(q, k, v, 1 / math.sqrt(D))
        return linear(o.reshape(B * T, H * D), self.p(f"{p}.o_proj.weight"))

    def _mla(self, h, i, a, B, T):
        cfg = self.config
        H = cfg["numHeads"]
        R, Dr, Dn, Dv = a["kvRank"], a["ropeDim"], a["nopeDim"], a["vDim"]
        p = f"model.layers.{i}.self_attn"
        bias = (lambda n: self.p(f"{p}.{n}.bias")) if a["bias"] else (lambda n: None)
        eps = cfg["rmsNormEps"]
        if a["qRank"] is None:
            qf = linear(h, self.p(f"{p}.q_proj.weight"), bias("q_proj"))
        else:
            qa = rmsnorm(linear(h, self.p(f"{p}.q_a_proj.weight")), self.p(f"{p}.q_a_layernorm.weight"), eps)
            qf = linear(qa, self.p(f"{p}.q_b_proj.weight"))
        cos, sin = self.tables(i, T, h.device)
        pairing = cfg["ropePairing"]
        q = rope(qf.reshape(B, T, H, Dn + Dr), cos, sin, pairing, Dn)  # (B, T, H, Dn+Dr)
        kva = linear(h, self.p(f"{p}.kv_a_proj_with_mqa.weight"), bias("kv_a_proj_with_mqa"))  # (N, R+Dr)
        c = kva[:, :R]
        if a["latentNorm"]:
            c = rmsnorm(c, self.p(f"{p}.kv_a_layernorm.weight"), eps)
        kr = rope(kva[:, R:R + Dr].reshape(B, T, 1, Dr), cos, sin, pairing)  # (B, T, 1, Dr)
        kvb = linear(c, self.p(f"{p}.kv_b_proj.weight")).reshape(B, T, H, Dn + Dv)
        k = torch.cat([kvb[..., :Dn], kr.expand(B, T, H, Dr)], -1)
        v = kvb[..., Dn:]
        o = attention(q, k, v, 1 / math.sqrt(Dn + Dr))
        return linear(o.reshape(B * T, H * Dv), self.p(f"{p}.o_proj.weight"))


def load_weights(spec, dtype=torch.float32, device="cpu", override=None):
    """Tensors {name: tensor (dtype, device)} of a model spec {config, tensors: [{name, shape}], format, files}: read by
    name from its safetensors files (or from `override`, a safetensors path, for checkpoint weights), or from a
    llama2.c checkpoint (format "llama2c", one file). Every expected tensor must be present with its shape and every
    value finite (src/io/finite.ts: the TypeScript side read only the headers)."""
    if override is None and spec.get("format") == "llama2c":
        path = spec["files"][0]
        got = read_llama2c(path, [(t["name"], t["shape"]) for t in spec["tensors"]])
        where = {n: path for n in got}
        shown = display_name
    else:
        files = [override] if override else spec["files"]
        where = {}
        for f in files:
            entries, _, _ = st.read_header(f)
            for n in entries:
                where.setdefault(n, f)
        by_file = {}
        for t in spec["tensors"]:
            f = where.get(t["name"])
            if f is None:
                raise st.FormatError(f"{files[0]}: tensor {t['name']}: missing (expected shape {t['shape']})")
            by_file.setdefault(f, set()).add(t["name"])
        got = {}
        for f, names in by_file.items():
            got.update(st.read_tensors(f, names)[0])
        shown = str
    weights = {}
    for t in spec["tensors"]:
        x = got[t["name"]]
        if list(x.shape) != list(t["shape"]):
            raise st.FormatError(f"{where[t['name']]}: tensor {t['name']}: expected shape {t['shape']}, found {list(x.shape)}")
        x = x.to(device=device, dtype=dtype).contiguous()
        assert_finite_weight(where[t["name"]], shown(t["name"]), x)
        weights[t["name"]] = x
    return weights


def assert_finite_weight(path, name, x):
    """src/io/finite.ts assertFiniteWeights: the first NaN/±Inf named by element, else nothing."""
    ok = torch.isfinite(x)
    if bool(ok.all()):
        return
    i = int((~ok).reshape(-1).nonzero()[0])
    v = float(x.reshape(-1)[i])
    idx, r = [], i
    for d in reversed(list(x.shape)):
        idx.append(r % d)
        r //= d
    kind = "NaN" if v != v else ("+Inf" if v > 0 else "-Inf")
    raise st.FormatError(f"{path}: tensor {name}: {kind} at element [{', '.join(str(j) for j in reversed(idx))}] (flat index {i}) "
                         f"of shape [{', '.join(str(d) for d in x.shape)}]; weights must be finite (the checkpoint is corrupt "
                         "or was saved from a diverged run)")

# One entry per attention kind, as src/model/attention/index.ts ATTENTION_KINDS: the layer's rope inverse frequencies
# (GQA: the model's; MLA: the layer's own kept pairs) and its attention block.
ATTENTION_KINDS = {
    "gqa": (lambda cfg, a: cfg["ropeInvFreq"], Model._gqa),
    "mla": (lambda cfg, a: a["ropeInvFreq"], Model._mla),
}

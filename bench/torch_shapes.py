"""Model shapes for the torch benchmarks and the memory table: Llama-3.2-1B / Qwen2.5-1.5B / Llama-3.2-3B /
Llama-3-8B-shaped teachers and their MLA students (X-EcoMLA-style: --kv-ratio 6.4 --rope-dim 32 → r_kv = 2·Hkv·D/6.4 − 32,
d_nope = D − 32, d_v = D), as ModelConfig dicts (camelCase, as src/model/config.ts) and tensor lists (src/model/weights.ts)."""

import math

SHAPES = {
    # name: vocab, hidden, intermediate, layers, heads, kv heads, head dim, tied, theta
    "llama-3.2-1b": (128256, 2048, 8192, 16, 32, 8, 64, True, 500000.0),
    "qwen2.5-1.5b": (151936, 1536, 8960, 28, 12, 2, 128, True, 1000000.0),
    "llama-3.2-3b": (128256, 3072, 8192, 28, 24, 8, 128, True, 500000.0),
    "llama-3-8b": (128256, 4096, 14336, 32, 32, 8, 128, False, 500000.0),
}


def llama3_inv_freq(theta, dim, factor=32.0, low=1.0, high=4.0, orig=8192):
    out = []
    for i in range(dim // 2):
        f = theta ** (-2 * i / dim)
        wl = 2 * math.pi / f
        if wl < orig / high:
            out.append(f)
        elif wl > orig / low:
            out.append(f / factor)
        else:
            s = (orig / wl - low) / (high - low)
            out.append((1 - s) * f / factor + s * f)
    return out


def configs(name, kv_ratio=6.4, rope_dim=32, small=False):
    V, C, I, L, H, Hkv, D, tied, theta = SHAPES[name]
    if small:  # a CPU smoke test of the same code path
        V, C, I, L, H, Hkv, D = 4096, 256, 512, 2, 4, 2, 64
    inv = llama3_inv_freq(theta, D)
    base = dict(arch="llama", vocabSize=V, hiddenSize=C, intermediateSize=I, numLayers=L, numHeads=H, rmsNormEps=1e-5,
                ropePairing="half", ropeInvFreq=inv, ropeTheta=theta, ropeScaling=None, maxPositions=131072,
                tieEmbeddings=tied, bosTokenId=1, eosTokenId=2)
    teacher = dict(base, layers=[dict(kind="gqa", numKvHeads=Hkv, headDim=D, qkvBias=False) for _ in range(L)])
    R = round(2 * Hkv * D / kv_ratio) - rope_dim
    mla = dict(kind="mla", kvRank=R, ropeDim=rope_dim, nopeDim=D - rope_dim, vDim=D, qRank=None, latentNorm=False,
               bias=False, ropeInvFreq=inv[: rope_dim // 2])
    student = dict(base, arch="deepseek_v3", layers=[dict(mla) for _ in range(L)])
    return teacher, student


def tensors(cfg):
    """[(name, shape)] of src/model/weights.ts modelTensors."""
    V, C, I, H = cfg["vocabSize"], cfg["hiddenSize"], cfg["intermediateSize"], cfg["numHeads"]
    out = [("model.embed_tokens.weight", [V, C])]
    for i, a in enumerate(cfg["layers"]):
        p = f"model.layers.{i}"
        out.append((f"{p}.input_layernorm.weight", [C]))
        s = f"{p}.self_attn"
        if a["kind"] == "gqa":
            Hkv, D = a["numKvHeads"], a["headDim"]
            out += [(f"{s}.q_proj.weight", [H * D, C]), (f"{s}.k_proj.weight", [Hkv * D, C]),
                    (f"{s}.v_proj.weight", [Hkv * D, C]), (f"{s}.o_proj.weight", [C, H * D])]
        else:
            R, Dr, Dn, Dv = a["kvRank"], a["ropeDim"], a["nopeDim"], a["vDim"]
            out += [(f"{s}.q_proj.weight", [H * (Dn + Dr), C]), (f"{s}.kv_a_proj_with_mqa.weight", [R + Dr, C]),
                    (f"{s}.kv_b_proj.weight", [H * (Dn + Dv), R]), (f"{s}.o_proj.weight", [C, H * Dv])]
        out += [(f"{p}.post_attention_layernorm.weight", [C]), (f"{p}.mlp.gate_proj.weight", [I, C]),
                (f"{p}.mlp.up_proj.weight", [I, C]), (f"{p}.mlp.down_proj.weight", [C, I])]
    out.append(("model.norm.weight", [C]))
    if not cfg["tieEmbeddings"]:
        out.append(("lm_head.weight", [V, C]))
    return out


def count(cfg, pred=lambda n: True):
    return sum(math.prod(s) for n, s in tensors(cfg) if pred(n))

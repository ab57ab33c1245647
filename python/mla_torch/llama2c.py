"""llama2.c checkpoints (the legacy version-0 layout run.c reads), as src/io/llama2c.ts: 7 int32 header fields (dim,
hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len), then f32 blocks, each stacked over layers where it
is per layer: token_embedding (V, C); rms_att (L, C); wq (L, H·D, C); wk (L, Hkv·D, C); wv (L, Hkv·D, C);
wo (L, C, H·D); rms_ffn (L, C); w1 (L, I, C); w2 (L, C, I); w3 (L, I, C); rms_final (C); freq_cis (T, D) (unused);
then wcls (V, C) only when vocab_size < 0. Mapped to the HF names without permuting anything (the config says
ropePairing 'adjacent'). The TypeScript side has validated the header against the file size (inspectModel); the
reader checks it again, since the file is read here, not there."""

import os
import struct

import torch

from .safetensors import FormatError

HEADER = 28
PER_LAYER = {  # HF name suffix → llama2.c block
    "input_layernorm.weight": "rms_att", "self_attn.q_proj.weight": "wq", "self_attn.k_proj.weight": "wk",
    "self_attn.v_proj.weight": "wv", "self_attn.o_proj.weight": "wo", "post_attention_layernorm.weight": "rms_ffn",
    "mlp.gate_proj.weight": "w1", "mlp.down_proj.weight": "w2", "mlp.up_proj.weight": "w3",
}


def _layout(path):
    """{block: (byte offset, floats per layer or whole)} and the file's L."""
    size = os.path.getsize(path)
    if size < HEADER:
        raise FormatError(f"{path}: header: expected {HEADER} bytes (7 int32), the file has {size}")
    with open(path, "rb") as f:
        C, I, L, H, Hkv, V, T = struct.unpack("<7i", f.read(HEADER))
    shared = V > 0
    V = abs(V)
    D = C // H
    parts = [("token_embedding", V * C, 1), ("rms_att", C, L), ("wq", C * H * D, L), ("wk", C * Hkv * D, L),
             ("wv", C * Hkv * D, L), ("wo", H * D * C, L), ("rms_ffn", C, L), ("w1", I * C, L), ("w2", C * I, L),
             ("w3", I * C, L), ("rms_final", C, 1), ("freq_cis", T * D, 1)]
    if not shared:
        parts.append(("wcls", V * C, 1))
    out, pos = {}, HEADER
    for name, n, layers in parts:
        out[name] = (pos, n)
        pos += 4 * n * layers
    if pos != size:
        raise FormatError(f"{path}: file size: the header needs {pos} bytes, the file has {size}")
    return out


def block_of(name):
    """(llama2.c block, layer) an HF name is cut from; (None, 0) for a name no llama2.c file has."""
    if name == "model.embed_tokens.weight":
        return "token_embedding", 0
    if name == "model.norm.weight":
        return "rms_final", 0
    if name == "lm_head.weight":
        return "wcls", 0
    parts = name.split(".", 3)  # model, layers, i, suffix
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[2].isdigit():
        return PER_LAYER.get(parts[3]), int(parts[2])
    return None, 0


def display_name(name):
    """The tensor's name in messages, with run.c's block as well (src/io/llama2c.ts blockOf)."""
    block, layer = block_of(name)
    where = f"{block} of layer {layer}" if name.startswith("model.layers.") else block
    return f"{name} (llama2.c {where})"


def read_llama2c(path, names):
    """{name: f32 tensor (shape as the spec)} for [(name, shape)] (HF names of src/model/weights.ts)."""
    layout = _layout(path)
    out = {}
    with open(path, "rb") as f:
        for name, shape in names:
            block, layer = block_of(name)
            if block is None or block not in layout:
                raise FormatError(f"{path}: tensor {name}: not in a llama2.c checkpoint")
            pos, n = layout[block]
            numel = 1
            for d in shape:
                numel *= d
            if numel != n:
                raise FormatError(f"{path}: tensor {name}: expected {numel} values, the llama2.c block {block} has {n}")
            f.seek(pos + 4 * n * layer)
            buf = bytearray(f.read(4 * n))
            out[name] = torch.frombuffer(buf, dtype=torch.float32).reshape(shape)
    return out

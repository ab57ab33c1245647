"""safetensors read/write (F32, F16, BF16), as src/io/safetensors.ts: u64 LE header length N, N bytes of JSON
{name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then raw little-endian row-major data.
Writes pad the header with spaces to 8-byte alignment and go to a temporary name, then rename (no partial files)."""

import json
import os
import struct

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
NAMES = {v: k for k, v in DTYPES.items()}
BYTES = {"F32": 4, "F16": 2, "BF16": 2}


class FormatError(Exception):
    """A malformed file: the message names the file and the field."""


def read_header(path):
    """(entries {name: (dtype, shape, begin, end)}, metadata, data_start)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size < 8:
            raise FormatError(f"{path}: header length: expected 8 bytes, the file has {size}")
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            raise FormatError(f"{path}: header length: {n} bytes runs past the end of the file ({size} bytes)")
        try:
            head = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise FormatError(f"{path}: header: expected UTF-8 JSON ({e})")
    if not isinstance(head, dict):
        raise FormatError(f"{path}: header: expected a JSON object")
    meta = head.pop("__metadata__", {}) or {}
    entries = {}
    for name, e in head.items():
        dt = e.get("dtype") if isinstance(e, dict) else None
        if dt not in DTYPES:
            raise FormatError(f'{path}: tensor "{name}".dtype: expected one of F32, F16, BF16, got {dt!r}')
        shape = [int(d) for d in e["shape"]]
        b, end = (int(x) for x in e["data_offsets"])
        numel = 1
        for d in shape:
            numel *= d
        if end - b != numel * BYTES[dt] or 8 + n + end > size:
            raise FormatError(f'{path}: tensor "{name}".data_offsets: [{b}, {end}] does not fit shape {shape} / the file')
        entries[name] = (dt, shape, b, end)
    return entries, meta, 8 + n


def read_tensors(path, names=None):
    """{name: tensor in its stored dtype} for the given names (all by default), and the metadata."""
    entries, meta, start = read_header(path)
    out = {}
    with open(path, "rb") as f:
        for name, (dt, shape, b, end) in entries.items():
            if names is not None and name not in names:
                continue
            f.seek(start + b)
            buf = bytearray(f.read(end - b))
            t = torch.frombuffer(buf, dtype=DTYPES[dt]) if len(buf) else torch.empty(0, dtype=DTYPES[dt])
            out[name] = t.reshape(shape)
    return out, meta


def write_tensors(path, tensors, metadata=None, dtype="F32"):
    """Write [(name, tensor)] in order, every tensor stored as `dtype`, atomically (temporary name, fsync, rename)."""
    header = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    datas = []
    off = 0
    for name, t in tensors:
        t = t.detach().to("cpu", DTYPES[dtype]).contiguous()
        nbytes = t.numel() * BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + nbytes]}
        off += nbytes
        datas.append(t)
    js = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    pad = (8 - (8 + len(js)) % 8) % 8
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(js) + pad))
        f.write(js + b" " * pad)
        for t in datas:
            f.write(raw_bytes(t))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def raw_bytes(t):
    """The raw little-endian bytes of a contiguous CPU tensor, without numpy (which bf16 lacks and we do not need):
    copied into a bytearray through a uint8 view that torch.frombuffer shares with it."""
    flat = t.reshape(-1)
    if flat.dtype in (torch.bfloat16, torch.float16):
        flat = flat.view(torch.int16)
    u8 = flat.view(torch.uint8)
    out = bytearray(u8.numel())
    if u8.numel():
        torch.frombuffer(out, dtype=torch.uint8).copy_(u8)
    return bytes(out)

#!/usr/bin/env python3
"""Load an `mla export --format hf` directory with stock transformers and compare its logits with ours.

    npx mla export MODEL --format hf --out EXPORT --dump-logits ours.json [--prompt TEXT]
    python3 scripts/check-transformers.py EXPORT ours.json [--tolerance 1e-4] [--dtype float32|float64|bfloat16]

Loads DeepseekV3ForCausalLM (no trust_remote_code, no custom code) and AutoTokenizer from EXPORT, checks that the
tokenizer gives the same ids as ours for the prompt, runs the model on our ids, and prints the relative logit error
||theirs - ours|| / ||ours|| and whether the greedy next tokens agree. Exit status 0 only when the ids match and the
error is within --tolerance (default 1e-4 for float32/float64 exports: both sides compute in f32 or better; bf16
needs about 1e-2). Needs: torch, transformers >= 4.57 (DeepSeek-V3 in the library), safetensors.
"""
import argparse
import json
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export_dir")
    ap.add_argument("ours_json", help="written by mla export --dump-logits")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--dtype", choices=["float32", "float64", "bfloat16"], default="float64")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()

    import torch
    from transformers import AutoTokenizer, DeepseekV3ForCausalLM

    with open(a.ours_json) as f:
        ours = json.load(f)
    ids = ours["ids"]
    ref = torch.tensor(ours["logits"], dtype=torch.float64)

    tok = AutoTokenizer.from_pretrained(a.export_dir)
    theirs_ids = tok(ours["prompt"], add_special_tokens=True)["input_ids"]
    ids_ok = list(theirs_ids) == list(ids)
    print(f"tokenizer: {type(tok).__name__}, ids {'identical' if ids_ok else 'DIFFERENT'} ({len(ids)} tokens)")
    if not ids_ok:
        print(f"  ours:         {ids}\n  transformers: {theirs_ids}")

    dtype = getattr(torch, a.dtype)
    model = DeepseekV3ForCausalLM.from_pretrained(a.export_dir, torch_dtype=dtype, attn_implementation="eager").to(a.device)
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([ids], device=a.device)).logits[0].to(torch.float64).cpu()
    if out.shape != ref.shape:
        print(f"logits shape {tuple(out.shape)} != ours {tuple(ref.shape)}")
        return 1
    err = (torch.linalg.norm(out - ref) / torch.linalg.norm(ref)).item()
    greedy = bool((out.argmax(-1) == ref.argmax(-1)).all())
    print(f"relative logit error vs ours: {err:.3e} (tolerance {a.tolerance:g}); greedy next tokens {'identical' if greedy else 'DIFFER'}")
    return 0 if ids_ok and err <= a.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())

"""python -m mla_torch COMMAND ...   (spoken to by src/train/torch-engine.ts through JSON lines on stdout)

  probe                      {"torch", "cuda", "devices", "sdpa", "compile"}: what this interpreter offers
  distill SPEC [--watch-stdin]  run the distillation job of a run spec (JSON); with --watch-stdin the process exits
                             when its stdin closes (the parent died), so a killed `mla distill` leaves no orphan
  logits JOBS                for each {model, ids, B, T, out} write the f32 logits (B·T, V) to `out` (tests)

Failures print {"type": "error", "message": ...} (one line the parent shows) and exit non-zero."""

import json
import os
import sys
import threading
import traceback

import torch


def _watch_stdin():
    def run():
        try:  # the raw fd, not sys.stdin: a thread blocked in the buffered reader stalls interpreter shutdown
            while os.read(0, 65536):
                pass
        except Exception:
            pass
        os._exit(3)

    threading.Thread(target=run, daemon=True).start()


def probe():
    from .model import _SDPA

    print(json.dumps({"torch": torch.__version__, "cuda": bool(torch.cuda.is_available()),
                      "devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                      "sdpa": _SDPA is not None, "compile": hasattr(torch, "compile")}), flush=True)


def logits(path):
    from .model import Model, load_weights
    from .safetensors import raw_bytes

    with open(path) as f:
        jobs = json.load(f)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for j in jobs:
        m = Model(j["model"]["config"], load_weights(j["model"]), trainable=set())
        ids = torch.tensor(j["ids"], dtype=torch.long).reshape(j["B"], j["T"])
        with torch.no_grad():
            out = m(ids).float().contiguous()
        with open(j["out"], "wb") as f:
            f.write(raw_bytes(out))
        print(json.dumps({"type": "logits", "out": j["out"], "shape": list(out.shape)}), flush=True)


def main(argv):
    from .distill import Job, JobError
    from .safetensors import FormatError

    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd = argv[0]
    try:
        if cmd == "probe":
            probe()
        elif cmd == "logits":
            logits(argv[1])
        elif cmd == "distill":
            if "--watch-stdin" in argv:
                _watch_stdin()
            with open(argv[1]) as f:
                spec = json.load(f)
            if spec.get("version") != 1:
                raise JobError(f"{argv[1]}: version: expected 1, got {spec.get('version')!r}")
            if spec.get("threads"):
                torch.set_num_threads(int(spec["threads"]))
            Job(spec).run()
        else:
            raise JobError(f"mla_torch: unknown command {cmd!r} (probe, distill, logits)")
    except (JobError, FormatError, ValueError) as e:
        print(json.dumps({"type": "error", "message": str(e)}), flush=True)
        return 2
    except Exception as e:  # an engine bug: the traceback goes to stderr, one line to the parent
        traceback.print_exc()
        print(json.dumps({"type": "error", "message": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

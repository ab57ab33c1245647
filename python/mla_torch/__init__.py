"""mla_torch: the PyTorch engine of mla-upcycle (`mla distill --engine torch`).

Mirrors src/model/ (every ModelConfig: GQA/MHA teachers, MLA students, hybrids) and src/train/ (the distillation
job) exactly, reading and writing the same model directories. Only dependency: torch (1.13 or 2.x).
The TypeScript side resolves every model format into a ModelConfig (JSON, camelCase as in src/model/config.ts),
tokenises the data and writes a run spec; this package trains and writes log.jsonl, checkpoints and the result.
"""

__version__ = "1"

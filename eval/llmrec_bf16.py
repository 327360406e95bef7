"""`llmrec` with the transformers backend's decoder cast to bf16 on a CPU (for measuring, not a feature).

The package loads the model in fp32 on a CPU. This wrapper runs any `llmrec` command with the
loaded model cast to bf16; the LM head keeps computing in fp32, as the backend's does on a GPU.
It exists to compare answers and metrics against the same command run by `llmrec` itself:

    .venv/bin/python eval/llmrec_bf16.py evaluate --data runs/ml-h10 --split valid ... --out runs/ev-bf16
"""

from __future__ import annotations

import sys


def main() -> int:
    import torch

    from llmrec.cli import main as llmrec_main
    from llmrec.decoding.backends.hf import HFBackend

    load = HFBackend.load.__func__

    def load_bf16(cls, *args, **kwargs):
        backend = load(cls, *args, **kwargs)
        backend.model.to(torch.bfloat16)  # the head's fp32 forward was set by the backend at load
        print("llmrec_bf16: decoder cast to bf16", file=sys.stderr)
        return backend

    HFBackend.load = classmethod(load_bf16)
    return llmrec_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

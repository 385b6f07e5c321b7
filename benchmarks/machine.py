"""The machine a benchmark ran on: every script prints this line first (CPUs differ between machines)."""

from __future__ import annotations

import os


def cpu_description() -> str:
    """The processor and the flags that decide PyTorch's kernels, and the caps in force."""
    model, flags = "?", set()
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
        for line in info:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
    caps = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ}
    return f"{model}; flags: {' '.join(f for f in wanted if f in flags) or 'none'}; caps: {caps or 'none'}"

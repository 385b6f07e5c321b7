"""Where and in what arithmetic a run computes: the device, the network's precision, running out of memory."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .errors import OptimizationError, SettingsError, literal


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; explicit names are checked against what exists."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingsError(f"{{device}} must be auto, cpu, cuda, cuda:N or mps, got {literal(repr(name))}",
                            field="device") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(f"{{device}} {literal(name)}: CUDA is not available on this machine", field="device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingsError(f"{{device}} {literal(name)}: only {torch.cuda.device_count()} CUDA device(s) here",
                                field="device")
    elif device.type == "mps":
        if not _mps_available():
            raise SettingsError(f"{{device}} {literal(name)}: MPS is not available on this machine", field="device")
    elif device.type != "cpu" or device.index not in (None, 0):
        raise SettingsError(f"{{device}} must be auto, cpu, cuda, cuda:N or mps, got {literal(repr(name))}",
                            field="device")
    return device


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The network's arithmetic: ``auto`` is bfloat16 on CPUs that compute it natively (AVX-512 BF16 or AMX,
    measured 2x faster per step there; emulated elsewhere, and many times slower), float32 elsewhere; CUDA's
    bfloat16 has not been measured yet."""
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def resolve_convolution(name: str, device: torch.device, precision: torch.dtype, tiled: bool,
                        pixels: int) -> bool:
    """Whether a stage's evaluations take Winograd's route (`gramstyle.vgg.winograd`). ``auto``: on the CPU in
    float32, for images of at least `winograd.MIN_PIXELS` pixels, where PyTorch's CPU kernels are AVX2 ones
    (NNPACK's kernels are AVX2 ones; where oneDNN has AVX-512 neither route has been measured against it, and
    bf16 is the faster route there anyway). A tiled stage is always direct, whatever the setting: the tiled evaluation
    is exact (`gramstyle.tiling`)."""
    from .vgg import winograd

    if name == "direct":
        return False
    usable = device.type == "cpu" and precision == torch.float32
    if name == "winograd":
        if not usable:
            raise SettingsError("{convolution} winograd needs the CPU and {precision} fp32", field="convolution")
        return not tiled
    return (usable and not tiled and pixels >= winograd.MIN_PIXELS
            and torch.backends.cpu.get_cpu_capability() == "AVX2")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (oneDNN's own check, a private torch API; without it, no).

    oneDNN answers for the instruction set it will use, so ``ONEDNN_MAX_CPU_ISA=AVX2`` makes it say no.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap and are reused; larger ones are mapped afresh each time. glibc's
#: own threshold adapts, but only up to 32 MiB, less than conv1_1's response at 512 px (45 MB); above 64 MiB
#: (beyond about 700 x 350 px) keeping blocks gained no time and cost resident memory (docs/benchmarks.md).
MMAP_THRESHOLD = 64 << 20
#: Free memory at the top of the heap that is kept rather than returned to the system (glibc's default, twice
#: the adaptive threshold, returned a step's maps between steps).
TRIM_THRESHOLD = 512 << 20


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks of up to `MMAP_THRESHOLD` for reuse, for this whole process.

    A step frees and allocates the same feature maps and gradients again; with glibc's defaults many of them are
    returned to the system and mapped afresh, and every page of a fresh mapping costs a page fault on its first
    write (docs/benchmarks.md, "Page faults", has the counts and the time they cost). A process-wide setting,
    so the library never makes it by itself: the command line calls this at start, as may a program that
    embeds gramstyle. Returns False where the C library is not glibc (nothing changed).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


@contextmanager
def out_of_memory_as_error(size: int) -> Iterator[None]:
    try:
        yield
    except torch.OutOfMemoryError:
        raise OptimizationError(f"out of memory at {{size}} {size}; try a smaller {{size}}", field="size") from None
    except RuntimeError as exc:
        text = str(exc)
        if "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text:
            raise OptimizationError(f"out of memory at {{size}} {size}; try a smaller {{size}}",
                                    field="size") from None
        raise

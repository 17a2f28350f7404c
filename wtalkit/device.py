"""Torch devices by name: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when a GPU is present).

Every command that computes takes the same ``--device`` and resolves it here, so a device that is
not there is the same one-line error everywhere.
"""

from __future__ import annotations

from wtalkit.errors import WtalError

AUTO = "auto"


def resolve_device(spec=AUTO):
    """The ``torch.device`` for a name (or a device); one-line :class:`WtalError` when it is absent."""
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    text = str(spec or AUTO).strip().lower()
    if text == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise WtalError(f"unknown device '{spec}' (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise WtalError(f"unsupported device '{spec}' (use cpu, cuda, cuda:N or auto)")
    if not torch.cuda.is_available():
        raise WtalError(f"--device {spec}: no CUDA GPU is available on this machine (use cpu or auto)")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise WtalError(f"--device {spec}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    return dev


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 matmul (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    import sys

    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        return bool({"avx512_bf16", "amx_bf16"} & set(line.split(":", 1)[1].split()))
        except OSError:
            return False
    return False


def _check_precision(precision) -> str:
    precision = str(precision or "auto").lower()
    if precision not in PRECISIONS:
        raise WtalError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    return precision


def inference_precision(precision: str, device) -> str:
    """What ``--precision`` means for feature extraction: ``auto`` is bf16 on a GPU that has it (else fp16)
    and on CPUs with native bf16, fp32 on other CPUs (each encoder checks its first batch against fp32)."""
    import torch

    precision = _check_precision(precision)
    dev = torch.device(device)
    if precision == "auto":
        if dev.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision == "fp16" and dev.type == "cpu":
        raise WtalError("fp16 is only supported on CUDA; use bf16 or fp32 on CPU")
    return precision


def training_precision(precision: str, device) -> str:
    """What ``train.precision`` means on ``device``: ``auto`` is bf16 on a CUDA GPU that has it (else
    fp16 there) and fp32 on the CPU; fp16 is refused on the CPU."""
    import torch

    precision = _check_precision(precision)
    dev = torch.device(device)
    if precision == "auto":
        if dev.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and dev.type != "cuda":
        raise WtalError("fp16 training needs a CUDA GPU; use bf16 or fp32 on the CPU")
    return precision


def autocast(device, precision: str):
    """The autocast context of a resolved precision (a no-op for fp32)."""
    import torch

    dev = torch.device(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None)

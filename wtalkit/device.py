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

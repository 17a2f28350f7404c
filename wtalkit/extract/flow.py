"""Dense optical flow between consecutive frames, for the flow stream of I3D (:mod:`wtalkit.extract.i3d`).

Two estimators, both giving the displacement in pixels (x, y) such that
``frame_a(p) ~ frame_b(p + flow(p))``:

- ``tvl1``: TV-L1 (Zach et al. 2007; Sánchez et al. 2013) from OpenCV's contrib
  modules (``cv2.optflow.DualTVL1OpticalFlow_create``, default parameters), on
  grey-scale frames, on the CPU. This is the flow the public I3D features were
  computed with (DeepMind's recipe; the feature releases used OpenCV's TV-L1,
  mostly its CUDA version through ``denseflow``). It is an optional dependency:
  ``pip install 'wtalkit[flow]'`` (``opencv-contrib-python-headless``; do not
  install it next to ``opencv-python``, both provide ``cv2``). It is slow: about a
  second or more per frame pair at 256 px on one CPU core.
- ``raft_large`` / ``raft_small`` (``raft`` = ``raft_large``): RAFT (Teed & Deng
  2020) from torchvision, on RGB frames, on the encoder's device; far faster on a
  GPU. Weights: ``--flow-weights PATH`` or torchvision's own file in its cache
  (``~/.cache/torch/hub/checkpoints``); never downloaded by wtalkit. RAFT is a
  different estimator from TV-L1, so its features are a different kind (the
  backbone name records it).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from wtalkit.errors import WtalError

FLOW_METHODS = ("tvl1", "raft_large", "raft_small")
_ALIASES = {
    "tv-l1": "tvl1",
    "tv_l1": "tvl1",
    "raft": "raft_large",
    "raft-large": "raft_large",
    "raft-small": "raft_small",
}
RAFT_UPDATES = 12  # torchvision's default number of refinement iterations
RAFT_CHUNK = 8  # frame pairs per RAFT forward pass
RAFT_MIN_SIZE = 128  # smaller frames are padded (replicated edges) up to this


def resolve_flow_method(name) -> str:
    """Canonical flow method name (``tvl1``, ``raft_large``, ``raft_small``); aliases ``raft``, ``tv-l1``."""
    key = str(name or "tvl1").strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FLOW_METHODS:
        raise WtalError(f"unknown optical flow method '{name}' (choose from tvl1, raft, raft_large, raft_small)")
    return key


def build_flow(method: str, device="cpu", weights=None):
    """The flow estimator: called with uint8 ``[n, 3, h, w]`` frame pairs ``(a, b)``, returns float32 ``[n, 2, h, w]``."""
    method = resolve_flow_method(method)
    if method == "tvl1":
        if weights:
            raise WtalError("TV-L1 flow has no weights; raft= weights only apply to --flow raft")
        return TVL1Flow()
    return RaftFlow(method, device=device, weights=weights)


# --------------------------------------------------------------------------- TV-L1 (OpenCV contrib, CPU)


def tvl1_available() -> bool:
    try:
        import cv2
    except ImportError:
        return False
    return hasattr(getattr(cv2, "optflow", None), "DualTVL1OpticalFlow_create")


class TVL1Flow:
    """OpenCV's Dual TV-L1 with its default parameters, on grey-scale uint8 frames (CPU)."""

    device = None  # frames stay on the CPU (set in __init__)

    def __init__(self):
        import torch

        if not tvl1_available():
            raise WtalError(
                "TV-L1 optical flow needs OpenCV's contrib modules (cv2.optflow): "
                "pip install 'wtalkit[flow]' (opencv-contrib-python-headless, instead of opencv-python), "
                "or use --flow raft"
            )
        self.device = torch.device("cpu")
        self._local = threading.local()  # an OpenCV algorithm object is not safe to share between threads

    def _algorithm(self):
        import cv2

        algo = getattr(self._local, "algo", None)
        if algo is None:
            algo = self._local.algo = cv2.optflow.DualTVL1OpticalFlow_create()
        return algo

    @staticmethod
    def _gray(frames) -> list:
        import cv2

        x = frames.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in x]

    def __call__(self, a, b):
        import torch

        algo = self._algorithm()
        ga, gb = self._gray(a), self._gray(b)
        out = np.stack([algo.calc(x, y, None) for x, y in zip(ga, gb)])  # [n, h, w, 2]
        return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=np.float32))


# --------------------------------------------------------------------------- RAFT (torchvision)


def _raft_parts(method: str):
    from torchvision.models import optical_flow as of

    if method == "raft_large":
        return of.raft_large, of.Raft_Large_Weights.DEFAULT
    return of.raft_small, of.Raft_Small_Weights.DEFAULT


class RaftFlow:
    """torchvision RAFT (large or small) on RGB frames scaled to [-1, 1], edge-padded to a multiple of 8 (>= 128)."""

    def __init__(self, method: str = "raft_large", device="cpu", weights=None):
        from wtalkit.device import resolve_device
        from wtalkit.extract.encoders import _read_state_dict, torchvision_cache_dir

        self.method = resolve_flow_method(method)
        self.device = resolve_device(device)
        builder, wenum = _raft_parts(self.method)
        if weights:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise WtalError(f"RAFT weights file not found: {path}")
        else:
            path = torchvision_cache_dir() / os.path.basename(wenum.url)
            if not path.is_file():
                raise WtalError(
                    f"{self.method} weights are not in torchvision's cache: put {path.name} at {path} "
                    f"or pass a local file (--flow-weights)"
                )
        sd = _read_state_dict(path)
        model = builder(weights=None, progress=False)
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            detail = next((ln for ln in lines if "size mismatch" in ln), lines[1] if len(lines) > 1 else "mismatch")
            raise WtalError(f"{path}: not a torchvision {self.method} state dict ({detail[:160]})") from None
        self.model = model.eval().to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._lock = threading.Lock()

    def __call__(self, a, b):
        import torch
        import torch.nn.functional as F

        h, w = a.shape[-2:]
        # RAFT needs sides that are multiples of 8 and at least 128 px (its correlation pyramid)
        ph, pw = max(RAFT_MIN_SIZE - h, (-h) % 8), max(RAFT_MIN_SIZE - w, (-w) % 8)
        out = []
        with torch.inference_mode(), self._lock:
            for i in range(0, a.shape[0], RAFT_CHUNK):
                x1 = a[i : i + RAFT_CHUNK].to(self.device, torch.float32) / 127.5 - 1.0
                x2 = b[i : i + RAFT_CHUNK].to(self.device, torch.float32) / 127.5 - 1.0
                if ph or pw:
                    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
                    x1, x2 = F.pad(x1, pad, mode="replicate"), F.pad(x2, pad, mode="replicate")
                f = self.model(x1, x2, num_flow_updates=RAFT_UPDATES)[-1]
                out.append(f[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w].float())
        return torch.cat(out)

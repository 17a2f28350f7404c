"""Frozen feature encoders: CLIP image tower (``vlp``) and Kinetics video classifiers (``cbp``).

Both take raw ``uint8`` RGB frames and do their model's own preprocessing as
batched torch ops (on the target device), then run the network under
``torch.inference_mode``, in bf16 autocast where it pays (CUDA, or CPUs with
native bf16 instructions). Reduced precision is *checked*, not trusted: the
first batch is also run in fp32 and if any feature's cosine similarity to the
fp32 one is below :data:`MIN_COSINE` the encoder falls back to fp32 for good.
``encoder.precision`` says what was finally used.

Backbone names (recorded in a stream's ``meta.json``):

- ``clip:NAME`` (a clip-anytorch model such as ``clip:ViT-B/16``) or
  ``clip:/abs/path/ckpt.pt`` (a local checkpoint);
- ``torchvision:ARCH`` with ARCH one of :data:`VIDEO_ARCHS`, Kinetics-400
  weights from torchvision's cache or from a local state-dict file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from wtalkit import io as wio
from wtalkit.device import inference_precision, resolve_device
from wtalkit.errors import WtalError
from wtalkit.extract.weights import find_weights, hashed_name, split_hashed

MIN_COSINE = 0.999

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# torchvision Kinetics-400 classifiers: (builder, weights enum, head attribute, feature dim)
VIDEO_ARCHS = {
    "r2plus1d_18": ("R2Plus1D_18_Weights", "fc", 512),
    "r3d_18": ("R3D_18_Weights", "fc", 512),
    "mc3_18": ("MC3_18_Weights", "fc", 512),
    "s3d": ("S3D_Weights", "classifier", 1024),
}


# --------------------------------------------------------------------------- precision


class _Encoder:
    """Shared precision handling: autocast + a one-time fp32 check of the first batch."""

    backbone: str
    dim: int

    def _init_precision(self, precision: str) -> None:
        self.requested_precision = (precision or "auto").lower()
        self.precision = inference_precision(precision, self.device)
        self.check_cosine: float | None = None  # min cosine(reduced, fp32) on the first batch
        self._checked = self.precision == "fp32" or self.requested_precision != "auto"

    def _forward(self, x):
        """Run the network on a preprocessed batch; returns float32 ``[N, D]`` on the CPU."""
        import torch

        with torch.inference_mode():
            if self.precision == "fp32":
                return self._net(x).float().cpu()
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            with torch.autocast(self.device.type, dtype=dtype):
                y = self._net(x).float()
            if not self._checked:
                self._checked = True
                y32 = self._net(x).float()
                cos = torch.nn.functional.cosine_similarity(y, y32, dim=-1, eps=1e-8)
                self.check_cosine = float(cos.min())
                if not self.check_cosine >= MIN_COSINE:  # also catches NaN
                    self.precision = "fp32"
                    return y32.cpu()
            return y.cpu()

    def _net(self, x):  # pragma: no cover - abstract
        raise NotImplementedError


def _to_tensor_nchw(frames, device):
    """uint8 ``[N, H, W, 3]`` numpy/tensor -> uint8 ``[N, 3, H, W]`` tensor on ``device``."""
    import torch

    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise WtalError(f"frames must be [N, H, W, 3], got {list(x.shape)}")
    if x.dtype != torch.uint8:
        raise WtalError(f"frames must be uint8, got {x.dtype}")
    return x.to(device, non_blocking=True).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------- CLIP (vlp)


def clip_backbone_name(spec: str) -> str:
    """``clip:NAME`` for a clip-anytorch model name, ``clip:FILE#sha256=HEX`` for a local file."""
    from wtalkit.models.clip import _import_clip

    spec = spec[len("clip:") :] if spec.startswith("clip:") else spec
    if spec in _import_clip().available_models() or split_hashed(spec)[1]:
        return f"clip:{spec}"
    p = Path(spec).expanduser()
    if p.is_file():  # recorded by content, not by path (see wtalkit.extract.weights)
        return hashed_name("clip:", p)
    return f"clip:{p}"


class ClipImageEncoder(_Encoder):
    """CLIP image embeddings (``encode_image``, not normalised) of RGB frames.

    ``spec``: a clip-anytorch name (``ViT-B/16``), ``clip:NAME``, or a local
    checkpoint path. ``weights`` (optional) loads that local file instead while
    keeping ``spec`` as the recorded backbone name.
    """

    def __init__(self, spec: str = "ViT-B/16", device="cpu", precision: str = "auto", weights=None):
        from wtalkit.models.clip import _import_clip, clip_cache_dir, load_clip

        self.device = resolve_device(device)
        self.backbone = clip_backbone_name(spec)
        name, digest = split_hashed(self.backbone[len("clip:") :])
        given = Path(spec[len("clip:") :] if spec.startswith("clip:") else spec).expanduser()
        if weights:
            source = str(weights)
        elif given.is_file():
            source = str(given)
        elif digest:
            source = str(find_weights(Path(name).name, digest, "CLIP", extra_dirs=[clip_cache_dir()]))
        else:  # a clip-anytorch name, or a path (recorded by wtalkit 0.1): load_clip says if it is neither
            source = name
        clip = _import_clip()
        if source in clip.available_models():
            # Never reach for the network: a named model must already be in clip-anytorch's cache.
            cached = clip_cache_dir() / os.path.basename(clip.clip._MODELS[source])
            if not cached.is_file():
                raise WtalError(
                    f"CLIP {source} is not in the cache: put {cached.name} at {cached} "
                    f"or pass a local checkpoint (--clip PATH)"
                )
        self.model = load_clip(source, device=str(self.device))
        visual = self.model.visual
        self.input_resolution = int(visual.input_resolution)
        self.dim = int(visual.output_dim)
        import torch

        self._mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)
        self._init_precision(precision)

    # The decoder gives native-resolution frames: CLIP resizes them itself (bicubic, antialiased).
    decode_size = None

    def preprocess(self, frames):
        """uint8 ``[N, H, W, 3]`` -> normalised float ``[N, 3, R, R]``: shorter side to R (bicubic), centre crop.

        The same steps as CLIP's PIL pipeline, batched in torch.
        """
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        r = self.input_resolution
        x = _to_tensor_nchw(frames, self.device)
        if min(x.shape[-2:]) != r:
            x = TF.resize(x, r, interpolation=InterpolationMode.BICUBIC, antialias=True)
        x = TF.center_crop(x, [r, r])
        x = x.to(torch.float32).div_(255.0)
        return (x - self._mean) / self._std

    def _net(self, x):
        return self.model.visual(x)

    def encode_preprocessed(self, x):
        """``[N, 3, R, R]`` from :meth:`preprocess` -> float32 ``[N, D]`` numpy."""
        if x.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._forward(x).numpy()

    def encode(self, frames) -> np.ndarray:
        """uint8 ``[N, H, W, 3]`` RGB frames -> float32 ``[N, D]`` CLIP image embeddings."""
        return self.encode_preprocessed(self.preprocess(frames))


# --------------------------------------------------------------------------- torchvision video classifiers (cbp)


def torchvision_cache_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _video_weights_enum(arch: str):
    from torchvision.models import video as tvv

    return getattr(tvv, VIDEO_ARCHS[arch][0]).KINETICS400_V1


def _read_state_dict(path: Path) -> dict:
    """A local weights file as ``{name: tensor}`` (:func:`wtalkit.io.load_state_dict`), ``module.`` prefixes
    of DataParallel checkpoints removed."""
    sd = wio.load_state_dict(path, "state dict")
    return {re.sub(r"^module\.", "", k): v for k, v in sd.items()}


class VideoClassifierEncoder(_Encoder):
    """Kinetics-400 torchvision video classifier with its head removed: one pooled feature per clip.

    ``spec``: ``r2plus1d_18`` (default), ``r3d_18``, ``mc3_18`` or ``s3d``,
    optionally prefixed ``torchvision:``. ``weights``: None for torchvision's
    own Kinetics-400 weights (from its cache, ``~/.cache/torch/hub/checkpoints``;
    never downloaded by wtalkit) or the path of a state-dict file of the same
    architecture (with or without the classification head).
    """

    def __init__(self, spec: str = "r2plus1d_18", device="cpu", precision: str = "auto", weights=None):
        import torch
        from torchvision.models import video as tvv

        name, digest = split_hashed(spec)
        arch = name[len("torchvision:") :] if name.startswith("torchvision:") else name
        if arch not in VIDEO_ARCHS:
            raise WtalError(f"unknown CBP backbone '{spec}' (choose from {', '.join(VIDEO_ARCHS)})")
        if digest and weights is None:  # features made with local weights: find that file again by content
            weights = find_weights(None, digest, f"torchvision {arch}")
        self.arch = arch
        self.backbone = f"torchvision:{arch}" + (f"#sha256={digest}" if digest else "")
        self.device = resolve_device(device)
        _, head, self.dim = VIDEO_ARCHS[arch]
        wenum = _video_weights_enum(arch)
        builder = getattr(tvv, arch)
        if weights is None:
            cached = torchvision_cache_dir() / os.path.basename(wenum.url)
            if not cached.is_file():
                raise WtalError(
                    f"Kinetics-400 weights for {arch} are not in torchvision's cache: "
                    f"put {os.path.basename(wenum.url)} at {cached} or pass a local file (--cbp-weights)"
                )
            try:
                model = builder(weights=wenum, progress=False)
            except Exception as e:  # corrupt cache file, hash mismatch, ...
                raise WtalError(
                    f"cannot load torchvision weights {cached} ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
                ) from None
        else:
            path = Path(weights).expanduser()
            sd = _read_state_dict(path)
            model = builder(weights=None)
            sd = {k: v for k, v in sd.items() if not k.startswith(head + ".")}
            try:
                missing, unexpected = model.load_state_dict(sd, strict=False)
            except RuntimeError as e:  # shape mismatches are raised even with strict=False
                detail = next((l.strip() for l in str(e).splitlines() if "size mismatch" in l), "shape mismatch")
                raise WtalError(f"{path}: not a {arch} state dict ({detail[:160]})") from None
            missing = [k for k in missing if not k.startswith(head + ".")]
            if missing or unexpected:
                what = f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'"
                raise WtalError(f"{path}: not a {arch} state dict ({what})")
        setattr(model, head, torch.nn.Identity())
        self.model = model.eval().to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        tf = wenum.transforms()
        self.resize_size = tuple(int(v) for v in tf.resize_size)
        self.crop_size = tuple(int(v) for v in tf.crop_size)
        self._mean = torch.tensor(tf.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(tf.std, device=self.device).view(1, 3, 1, 1)
        self._init_precision(precision)

    @property
    def decode_size(self) -> tuple[int, int]:
        """(height, width) the model's preprocessing resizes every frame to; the decoder can do it."""
        return self.resize_size

    def preprocess(self, frames):
        """uint8 ``[N, H, W, 3]`` -> float ``[N, 3, h, w]``: resize to ``resize_size``, centre crop, Kinetics mean/std.

        Frame by frame the same as torchvision's ``VideoClassification`` preset
        (bilinear, no antialias, as the weights were trained).
        """
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        x = _to_tensor_nchw(frames, self.device)
        if tuple(x.shape[-2:]) != self.resize_size:
            x = TF.resize(x, list(self.resize_size), interpolation=InterpolationMode.BILINEAR, antialias=False)
        x = TF.center_crop(x, list(self.crop_size))
        x = x.to(torch.float32).div_(255.0)
        return (x - self._mean) / self._std

    def _net(self, x):
        return self.model(x)

    def encode_preprocessed(self, x):
        """``[N, L, 3, h, w]`` (frames from :meth:`preprocess`) -> float32 ``[N, D]`` numpy."""
        if x.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._forward(x.permute(0, 2, 1, 3, 4)).numpy()

    def encode(self, clips) -> np.ndarray:
        """uint8 ``[N, L, H, W, 3]`` clips -> float32 ``[N, D]`` features pooled over each clip."""
        import torch

        x = clips if isinstance(clips, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(clips))
        if x.ndim != 5:
            raise WtalError(f"clips must be [N, L, H, W, 3], got {list(x.shape)}")
        n, l = x.shape[:2]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        p = self.preprocess(x.reshape(n * l, *x.shape[2:]))
        return self.encode_preprocessed(p.reshape(n, l, *p.shape[1:]))

"""Two-stream Inception-v1 I3D (Carreira & Zisserman, CVPR 2017): the features of the public WTAL releases.

Every weakly-supervised temporal action localization paper trains on the same
kind of features: I3D pretrained on Kinetics-400, one RGB and one optical-flow
network, each giving the 1,024-d average-pooled ``Mixed_5c`` activation (the
input of the logits layer) per 16-frame snippet at 25 fps, concatenated
RGB ‖ flow = 2,048 dims (THUMOS14 and ActivityNet1.2 releases of W-TALC, STPN,
BaS-Net, ...). :class:`I3DEncoder` computes them from raw frames, so a model
trained on the public features (``wtalkit import-thumos``) can localize a new
video, and ``wtalkit extract --cbp-backbone i3d`` makes datasets of the same kind
(backbone name ``i3d-kinetics-rgb+flow``, as the THUMOS importer records).

Weights: the community's PyTorch port of the DeepMind checkpoints
(``rgb_imagenet.pt``, 3 input channels; ``flow_imagenet.pt``, 2 input channels;
ImageNet-inflated, trained on Kinetics-400), loaded by their own parameter names
(``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_var``, ...,
``logits.conv3d.bias``) and checked strictly: a missing, unexpected or wrongly
shaped tensor is a one-line error naming it (``bn.num_batches_tracked`` may be
present or not). Files are given as ``rgb=RGB.pt,flow=FLOW.pt`` or found by file
name in ``$WTALKIT_WEIGHTS`` / ``~/.cache/wtalkit/weights``.

Preprocessing (:data:`RESIZE`, :data:`CROP`; researched from the public code, see
below where the sources disagree):

1. frames on the 25 fps time grid (:mod:`wtalkit.extract.video`);
2. each frame resized so its *shorter* side is 256 px, aspect ratio kept
   (bilinear, antialiased), and rounded to uint8 (the public pipelines stored
   these frames as JPEGs);
3. RGB: the centre 224x224 crop, scaled ``x / 255 * 2 - 1`` to [-1, 1];
4. flow: TV-L1 (OpenCV, default parameters) between each frame and the next,
   on the grey-scale *full* resized frames, then the same centre crop; values
   (pixels of displacement, x then y) clipped to [-20, 20] and divided by 20.
   Flow field *i* is ``frame i -> frame i+1``, so a 16-frame snippet's flow
   uses its first frame through the first frame of the next snippet;
5. non-overlapping 16-frame snippets; each network runs on one snippet
   (``[1, C, 16, 224, 224]``) and its ``Mixed_5c`` output (``[1024, 2, 7, 7]``)
   is averaged, which is the port's ``AvgPool3d((2, 7, 7))`` before the logits.
   The trailing partial snippet is kept and padded by repeating the video's
   last frame (so its padded flow is zero), see :mod:`wtalkit.extract.pipeline`.

Where sources disagree: DeepMind's README (the reference for the released
checkpoints) resizes the shorter side to 256 with bilinear interpolation and
takes the centre 224 crop at test time, computes TV-L1 on grey-scale frames and
truncates flow to [-20, 20] before rescaling to [-1, 1]. The widely used PyTorch
feature extractors differ: some resize every frame to 340x256 regardless of
aspect ratio and average 10 crops (corners + centre, and flips) or take the centre
crop; piergiaj's scripts only upscale frames smaller than 226 px; flow is often
read back from uint8 JPEGs written by ``denseflow``/``dense_flow`` with bound 20
(i.e. quantised to 256 levels, then ``x / 255 * 2 - 1``), and their TV-L1 is the
GPU one (OpenCV CUDA) with its own defaults. The public THUMOS14 features do not
document which of these was used beyond "I3D, TV-L1, 16-frame snippets, 25 fps".
wtalkit follows DeepMind's description (single centre crop, float flow, no JPEG
quantisation); expect features close to, not bit-identical with, the releases.
Most extractors drop the trailing partial snippet; wtalkit scores it (padding).

Optical flow (:mod:`wtalkit.extract.flow`): ``tvl1`` (OpenCV contrib, CPU; what the
releases used; slow: seconds per frame pair on a CPU core at 256 px) or RAFT from
torchvision (``raft_large`` / ``raft_small``; much faster on a GPU, a different
flow estimator, recorded in the backbone name as ``...@raft_large``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from wtalkit.errors import WtalError
from wtalkit.extract.encoders import _Encoder, _read_state_dict, _to_tensor_nchw
from wtalkit.extract.weights import weights_cache_dir

I3D_BACKBONE = "i3d-kinetics-rgb+flow"  # == wtalkit.data.thumos.CBP_META.backbone
FEATURE_DIM = 1024  # per stream
RESIZE = 256  # shorter side of every frame before the crop
CROP = 224  # centre crop fed to both networks
FLOW_BOUND = 20.0  # flow clipped to [-20, 20] px then divided by 20
WEIGHT_FILES = {"rgb": "rgb_imagenet.pt", "flow": "flow_imagenet.pt"}

# (in_channels, [b0, b1a, b1b, b2a, b2b, b3b]) of each Inception block, as in the paper / the port
MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


# --------------------------------------------------------------------------- names


def i3d_backbone_name(flow: str = "tvl1") -> str:
    """``i3d-kinetics-rgb+flow`` for TV-L1 flow (the public releases), ``...@raft_large`` etc. otherwise."""
    from wtalkit.extract.flow import resolve_flow_method

    flow = resolve_flow_method(flow)
    return I3D_BACKBONE if flow == "tvl1" else f"{I3D_BACKBONE}@{flow}"


def parse_i3d_backbone(name: str) -> str | None:
    """The flow method of an I3D backbone name (``"tvl1"``, ``"raft_large"``, ...), None if not an I3D name."""
    from wtalkit.extract.flow import FLOW_METHODS

    if name == I3D_BACKBONE:
        return "tvl1"
    base, _, flow = name.partition("@")
    if base == I3D_BACKBONE and flow in FLOW_METHODS:
        return flow
    return None


def is_i3d_backbone(name: str) -> bool:
    return parse_i3d_backbone(name) is not None


_WEIGHT_KEY = re.compile(r",(?=\s*(?:rgb|flow|raft)\s*=)")


def parse_i3d_weights(spec) -> dict:
    """``"rgb=A.pt,flow=B.pt[,raft=C.pth]"`` -> ``{"rgb": "A.pt", "flow": "B.pt", "raft": "C.pth"}``.

    Either part may be left out (then it is looked up in the weights cache);
    anything else is a one-line error.
    """
    if not spec:
        return {}
    if isinstance(spec, dict):
        return {k: str(v) for k, v in spec.items() if v}
    out: dict = {}
    for part in _WEIGHT_KEY.split(str(spec).strip()):
        key, eq, path = part.partition("=")
        key = key.strip()
        if not eq or key not in ("rgb", "flow", "raft") or not path.strip():
            raise WtalError(
                f"I3D weights are given as rgb=RGB.pt,flow=FLOW.pt (the two files of the PyTorch port), got '{spec}'"
            )
        if key in out:
            raise WtalError(f"I3D weights: '{key}=' given twice in '{spec}'")
        out[key] = path.strip()
    return out


def format_i3d_weights(parts: dict) -> str | None:
    """Inverse of :func:`parse_i3d_weights` (fixed key order); None when empty."""
    s = ",".join(f"{k}={parts[k]}" for k in ("rgb", "flow", "raft") if parts.get(k))
    return s or None


def find_i3d_weights(stream: str, given=None) -> Path:
    """The weight file of the ``rgb`` or ``flow`` network: ``given``, else its standard name in the cache."""
    if given:
        p = Path(given).expanduser()
        if not p.is_file():
            raise WtalError(f"I3D {stream} weights file not found: {p}")
        return p
    cached = weights_cache_dir() / WEIGHT_FILES[stream]
    if cached.is_file():
        return cached
    raise WtalError(
        f"no I3D {stream} weights: pass --cbp-weights rgb=rgb_imagenet.pt,flow=flow_imagenet.pt "
        f"or put {WEIGHT_FILES[stream]} in {weights_cache_dir()}"
    )


# --------------------------------------------------------------------------- the network


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (front, back) of one dimension; the DeepMind checkpoints were trained with it."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


def _pad_same(x, kernel, stride):
    import torch.nn.functional as F

    t, h, w = x.shape[-3:]
    pt, ph, pw = (_same_pad(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    if not any(pt + ph + pw):
        return x
    return F.pad(x, (*pw, *ph, *pt))  # zeros: every pooled input follows a ReLU, so zero == -inf for max


def _build_modules():
    """The torch module classes (torch imported lazily, like everywhere in wtalkit)."""
    import torch
    from torch import nn

    class Unit3D(nn.Module):
        """Conv3d (no bias) + BatchNorm3d (eps 1e-3) + ReLU with "SAME" padding; the logits unit has a bias, no BN."""

        def __init__(self, cin, cout, kernel=(1, 1, 1), stride=(1, 1, 1), bn=True, relu=True, bias=False):
            super().__init__()
            self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
            self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
            self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if bn else None

        def forward(self, x):
            x = self.conv3d(_pad_same(x, self.kernel, self.stride))
            if self.bn is not None:
                x = self.bn(x)
            return torch.relu(x) if self.relu else x

    class MaxPool3dSame(nn.Module):
        def __init__(self, kernel, stride):
            super().__init__()
            self.kernel, self.stride = tuple(kernel), tuple(stride)

        def forward(self, x):
            return nn.functional.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)

    class Mixed(nn.Module):
        """Inception block: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | 3x3x3 max-pool -> 1x1, concatenated."""

        def __init__(self, cin, c):
            super().__init__()
            self.b0 = Unit3D(cin, c[0])
            self.b1a = Unit3D(cin, c[1])
            self.b1b = Unit3D(c[1], c[2], (3, 3, 3))
            self.b2a = Unit3D(cin, c[3])
            self.b2b = Unit3D(c[3], c[4], (3, 3, 3))
            self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
            self.b3b = Unit3D(cin, c[5])

        def forward(self, x):
            return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)

    class InceptionI3D(nn.Module):
        """Inception-v1 I3D; parameter names are those of the PyTorch port's state dicts."""

        def __init__(self, in_channels: int = 3, num_classes: int = 400):
            super().__init__()
            self.in_channels, self.num_classes = in_channels, num_classes
            self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
            self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
            self.Conv3d_2b_1x1 = Unit3D(64, 64)
            self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
            self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
            self.Mixed_3b = Mixed(*MIXED["Mixed_3b"])
            self.Mixed_3c = Mixed(*MIXED["Mixed_3c"])
            self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
                setattr(self, name, Mixed(*MIXED[name]))
            self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            self.Mixed_5b = Mixed(*MIXED["Mixed_5b"])
            self.Mixed_5c = Mixed(*MIXED["Mixed_5c"])
            self.logits = Unit3D(FEATURE_DIM, num_classes, bn=False, relu=False, bias=True)

        def features(self, x):
            """``[N, C, T, H, W]`` (values in [-1, 1]) -> ``[N, 1024]``: ``Mixed_5c`` averaged over time and space.

            For a 16x224x224 snippet this is the port's ``AvgPool3d((2, 7, 7))`` output, the
            input of the logits; other sizes (e.g. small test inputs) are averaged the same way.
            """
            for name, module in self.named_children():
                if name == "logits":
                    break
                x = module(x)
            return x.mean(dim=(2, 3, 4))

        def forward(self, x):
            """Kinetics logits ``[N, classes]`` of whole clips (not used for features)."""
            return self.logits(self.features(x)[:, :, None, None, None]).flatten(1)

    return InceptionI3D


_CLASSES: dict = {}


def InceptionI3D(in_channels: int = 3, num_classes: int = 400):
    """A randomly initialised Inception-v1 I3D (``in_channels`` 3 for RGB, 2 for flow)."""
    if "net" not in _CLASSES:
        _CLASSES["net"] = _build_modules()
    return _CLASSES["net"](in_channels, num_classes)


def _expected_shapes(in_channels: int, num_classes: int) -> dict:
    """Parameter name -> shape of the port's state dict (``num_batches_tracked`` left out: it is optional)."""
    import torch

    with torch.device("meta"):
        net = InceptionI3D(in_channels, num_classes)
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def random_i3d_state_dict(in_channels: int = 3, num_classes: int = 400, seed: int = 0) -> dict:
    """A state dict with the port's exact names and shapes and random, well-scaled values (for tests).

    Convolutions are He-initialised and BatchNorm statistics are near identity so
    activations keep a sane scale through the 57 layers; no ``num_batches_tracked``.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in _expected_shapes(in_channels, num_classes).items():
        if name.endswith("conv3d.weight"):
            fan_in = int(np.prod(shape[1:]))
            v = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif name.endswith("bn.weight"):
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("bn.running_var"):
            v = 1.0 + 0.5 * torch.rand(shape, generator=g)
        else:  # bn.bias, bn.running_mean, logits bias
            v = 0.05 * torch.randn(shape, generator=g)
        out[name] = v.float()
    return out


def _stream_word(channels: int) -> str:
    return {3: "RGB", 2: "flow"}.get(int(channels), f"{int(channels)}-channel")


def load_i3d(path, in_channels: int, device="cpu"):
    """The I3D network of a state-dict file of the PyTorch port, checked strictly; eval mode, frozen.

    The number of classes is read from the file's logits (400 for Kinetics). One-line
    WtalError for a file that is not such a state dict, naming the first problem.
    """
    import torch

    path = Path(path)
    sd = _read_state_dict(path)
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    what = f"{path}: not an I3D {_stream_word(in_channels)} state dict of the PyTorch port"
    first = sd.get("Conv3d_1a_7x7.conv3d.weight")
    if first is not None and first.ndim == 5 and first.shape[1] != in_channels:
        raise WtalError(
            f"{path}: this is an I3D {_stream_word(first.shape[1])} network ({first.shape[1]} input channels), "
            f"expected the {_stream_word(in_channels)} one ({in_channels} input channels)"
        )
    logits = sd.get("logits.conv3d.weight")
    num_classes = int(logits.shape[0]) if logits is not None and logits.ndim == 5 and logits.shape[0] > 0 else 400
    expected = _expected_shapes(in_channels, num_classes)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    more = lambda lst: f" and {len(lst) - 1} more" if len(lst) > 1 else ""
    if missing:
        raise WtalError(f"{what} (missing '{missing[0]}'{more(missing)})")
    if unexpected:
        raise WtalError(f"{what} (unexpected '{unexpected[0]}'{more(unexpected)})")
    for k, shape in expected.items():
        if tuple(sd[k].shape) != shape:
            raise WtalError(f"{what} ('{k}' has shape {list(sd[k].shape)}, expected {list(shape)})")
        if not sd[k].is_floating_point():
            raise WtalError(f"{what} ('{k}' is {sd[k].dtype}, expected floating point)")
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        net = InceptionI3D(in_channels, num_classes)
    full = {k: v.float().contiguous() for k, v in sd.items()}
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            full[k] = torch.zeros((), dtype=v.dtype)
    net.load_state_dict(full, strict=True, assign=True)
    net = net.eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    if not all(torch.isfinite(v).all() for v in net.state_dict().values() if v.is_floating_point()):
        raise WtalError(f"{path}: the I3D weights contain NaN or infinite values")
    return net


# --------------------------------------------------------------------------- preprocessing


def scale_rgb(frames):
    """uint8 (or 0..255 float) RGB -> float32 in [-1, 1]: ``x / 255 * 2 - 1``."""
    import torch

    return frames.to(torch.float32) * (2.0 / 255.0) - 1.0


def scale_flow(flow):
    """Flow in pixels -> float32 in [-1, 1]: clipped to [-20, 20], divided by 20."""
    import torch

    return flow.to(torch.float32).clamp(-FLOW_BOUND, FLOW_BOUND) / FLOW_BOUND


def resized_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(h, w) with the shorter side ``shorter`` and the aspect ratio kept (rounded)."""
    if height <= width:
        return shorter, max(shorter, int(round(width * shorter / height)))
    return max(shorter, int(round(height * shorter / width))), shorter


# --------------------------------------------------------------------------- the encoder


class I3DFrames:
    """The I3D preprocessing: grid frames -> per-frame ``[5, crop, crop]`` (RGB and flow, scaled to [-1, 1]).

    ``flow``: an estimator from :func:`wtalkit.extract.flow.build_flow`; ``device``: where
    the output goes (the networks' device). ``resize``/``crop`` default to
    :data:`RESIZE`/:data:`CROP`.
    """

    def __init__(self, flow, device="cpu", resize=None, crop=None):
        import torch

        self.flow = flow
        self.device = torch.device(device)
        self.resize = int(resize if resize is not None else RESIZE)
        self.crop = int(crop if crop is not None else CROP)
        if self.crop < 1 or self.resize < self.crop:
            raise WtalError(f"I3D input: the resized shorter side ({self.resize}) must be >= the crop ({self.crop})")

    def resize_frames(self, frames):
        """uint8 ``[N, H, W, 3]`` -> uint8 ``[N, 3, h, w]``, shorter side :attr:`resize` (bilinear, antialiased)."""
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        x = _to_tensor_nchw(frames, self.flow.device)
        size = resized_size(int(x.shape[-2]), int(x.shape[-1]), self.resize)
        if tuple(x.shape[-2:]) != size:
            x = TF.resize(x.float(), list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        return x

    def finish(self, frames, flow):
        """Resized uint8 frames ``[n, 3, h, w]`` and their flow ``[n, 2, h, w]`` (px) -> ``[n, 5, c, c]`` scaled."""
        import torch
        from torchvision.transforms import functional as TF

        c = [self.crop, self.crop]
        rgb = scale_rgb(TF.center_crop(frames, c))
        fl = scale_flow(TF.center_crop(flow, c))
        return torch.cat([rgb.to(self.device), fl.to(self.device)], 1)

    def stream(self, batches):
        """``(grid_idx [b], uint8 frames [b, H, W, 3])`` batches in grid order -> ``(grid_idx, [b, 5, c, c])``.

        Channels 0-2: RGB in [-1, 1]; 3-4: flow (x, y) of ``frame i -> frame i+1`` in
        [-1, 1]. Each frame is held back until its successor is decoded; a frame whose
        successor is not on the grid (the video's last frame) gets zero flow, which is
        the flow towards a repeated last frame.
        """
        import torch

        prev_idx = np.zeros(0, np.int64)
        prev = None
        for g, frames in batches:
            x = self.resize_frames(frames)
            idx = np.concatenate([prev_idx, np.asarray(g, np.int64)])
            if prev is not None:
                x = torch.cat([prev, x])
            if len(idx) < 2:
                prev_idx, prev = idx, x
                continue
            flow = torch.zeros((len(idx) - 1, 2, *x.shape[-2:]), dtype=torch.float32, device=x.device)
            pairs = np.flatnonzero(np.diff(idx) == 1)
            if len(pairs):
                sel = torch.from_numpy(pairs).to(x.device)
                flow[sel] = self.flow(x[sel], x[sel + 1]).to(flow.device, torch.float32)
            yield idx[:-1], self.finish(x[:-1], flow)
            prev_idx, prev = idx[-1:], x[-1:]
        if prev is not None:
            zero = torch.zeros((1, 2, *prev.shape[-2:]), dtype=torch.float32, device=prev.device)
            yield prev_idx, self.finish(prev, zero)

    def video(self, frames):
        """uint8 ``[N, H, W, 3]`` consecutive frames -> ``[N, 5, c, c]`` (the last one with zero flow)."""
        import torch

        parts = [x for _, x in self.stream([(np.arange(len(frames)), frames)])]
        return torch.cat(parts) if parts else torch.zeros((0, 5, self.crop, self.crop), device=self.device)


class I3DEncoder(_Encoder):
    """RGB ‖ flow I3D features (2,048-d) of 16-frame snippets; see the module docstring for the recipe.

    ``weights``: ``"rgb=RGB.pt,flow=FLOW.pt"`` (optionally ``,raft=RAFT.pth``) or a
    dict with those keys; parts left out are found in the weights cache.
    ``flow``: ``tvl1`` (default), ``raft``/``raft_large`` or ``raft_small``.
    ``resize``/``crop`` default to :data:`RESIZE`/:data:`CROP` (smaller in tests).

    The pipeline feeds it through :meth:`preprocess_stream` (frames in grid order;
    flow needs each frame's successor) and :meth:`encode_preprocessed`.
    """

    # Frames are resized here (shorter side, aspect kept), not by the decoder.
    decode_size = None
    extra_frames = 1  # a snippet's flow needs the frame after it

    def __init__(self, weights=None, flow: str = "tvl1", device="cpu", precision: str = "auto", resize=None, crop=None):
        from wtalkit.device import resolve_device
        from wtalkit.extract.flow import build_flow

        self.device = resolve_device(device)
        self.backbone = i3d_backbone_name(flow)
        self.flow_method = parse_i3d_backbone(self.backbone)
        self.dim = 2 * FEATURE_DIM
        parts = parse_i3d_weights(weights)
        self.weight_files = {s: find_i3d_weights(s, parts.get(s)) for s in ("rgb", "flow")}
        flow_estimator = build_flow(self.flow_method, device=self.device, weights=parts.get("raft"))
        self.frames = I3DFrames(flow_estimator, self.device, resize, crop)
        self.rgb_net = load_i3d(self.weight_files["rgb"], 3, self.device)
        self.flow_net = load_i3d(self.weight_files["flow"], 2, self.device)
        self._init_precision(precision)

    def preprocess_stream(self, batches):
        """Decoded ``(grid_idx, frames)`` batches in grid order -> ``(grid_idx, [b, 5, c, c])``; see :class:`I3DFrames`."""
        return self.frames.stream(batches)

    def _net(self, x):
        import torch

        return torch.cat([self.rgb_net.features(x[:, :3]), self.flow_net.features(x[:, 3:])], 1)

    def encode_preprocessed(self, x):
        """``[N, L, 5, c, c]`` snippets (from :meth:`preprocess_stream`) -> float32 ``[N, 2048]`` (RGB ‖ flow)."""
        if x.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._forward(x.permute(0, 2, 1, 3, 4)).numpy()

    def encode(self, frames) -> np.ndarray:
        """uint8 ``[N, L, H, W, 3]`` snippets of consecutive frames -> ``[N, 2048]``.

        Each snippet's flow is computed within it (its last frame gets zero flow); the
        pipeline instead uses the next snippet's first frame, see :meth:`preprocess_stream`.
        """
        import torch

        x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
        if x.ndim != 5:
            raise WtalError(f"snippets must be [N, L, H, W, 3], got {list(x.shape)}")
        if x.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_preprocessed(torch.stack([self.frames.video(s) for s in x]))

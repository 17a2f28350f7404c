"""Building the two branches from a config (and from checkpoints)."""

from __future__ import annotations

from torch import nn

from wtalkit.config import Config
from wtalkit.errors import WtalError
from wtalkit.models.cbp import CBPBranch
from wtalkit.models.co2net import CO2Net
from wtalkit.models.um import UM


def cbp_architectures() -> dict:
    """``cbp.arch`` name -> class; each implements the CBP interface of :mod:`wtalkit.models.cbp`."""
    return {
        "transformer": CBPBranch,
        "co2net": CO2Net,
        "um": UM,
    }


def build_cbp(cfg: Config, feat_dim: int, num_classes: int) -> nn.Module:
    """The CBP branch named by ``cfg.cbp.arch``."""
    archs = cbp_architectures()
    if cfg.cbp.arch not in archs:
        raise WtalError(f"cbp.arch '{cfg.cbp.arch}' is not available in this wtalkit (choose from {', '.join(archs)})")
    return archs[cfg.cbp.arch](feat_dim, num_classes, cfg.cbp)


def load_branch(model: nn.Module, state, name: str, where) -> nn.Module:
    """Load a branch's weights strictly; a checkpoint of another architecture is a one-line error."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else (first[0] if first else type(e).__name__)
        raise WtalError(
            f"{where}: its {name.upper()} weights do not fit this wtalkit's {name.upper()} branch "
            f"(a checkpoint of another version or config?): {detail[:160]}"
        ) from None
    return model


def build_vlp(cfg: Config, classes: list, vis_dim: int, device="cpu", clip_model=None):
    """The VLP branch on the CLIP model named by ``cfg.vlp.clip_model`` (loaded unless given)."""
    from wtalkit.models.clip import class_words, load_clip
    from wtalkit.models.vlp import VLPBranch

    clip_model = clip_model if clip_model is not None else load_clip(cfg.vlp.clip_model, device=device)
    return VLPBranch(clip_model, [class_words(c) for c in classes], cfg.vlp, vis_dim=vis_dim)


def build_vlp_from_checkpoint(ckpt: dict, cfg: Config, classes: list, device="cpu"):
    from wtalkit.data.features import StreamMeta

    return build_vlp(cfg, classes, StreamMeta.from_dict(ckpt["streams"]["vlp"]).dim, device=device)

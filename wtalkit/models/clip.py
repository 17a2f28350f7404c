"""Loading CLIP through clip-anytorch.

``load_clip(spec)`` takes a clip-anytorch model name (``ViT-B/16``: the file is
looked up in clip-anytorch's standard cache, ``~/.cache/clip``, and downloaded
there only if missing) or the path of a local checkpoint (a JIT archive or a
state dict; the architecture is read from the weights). Nothing in the file is
run: see :func:`load_clip`.

``random_clip_state_dict`` builds CLIP state dicts of any size with random
weights: tests save tiny ones and load them back through ``clip.load`` (the
real code path); benchmarks build the real ViT-B/16 architecture.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from wtalkit.config import is_prompt_template
from wtalkit.errors import WtalError

# The architectures of clip-anytorch's published models that wtalkit benchmarks use.
CLIP_ARCHS = {
    "ViT-B/16": dict(
        embed_dim=512,
        image_resolution=224,
        vision_layers=12,
        vision_width=768,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
    ),
    "ViT-B/32": dict(
        embed_dim=512,
        image_resolution=224,
        vision_layers=12,
        vision_width=768,
        vision_patch_size=32,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
    ),
    # The demo's small random CLIP (real tokenizer, real code paths, no pretrained knowledge).
    "demo": dict(
        embed_dim=64,
        image_resolution=32,
        vision_layers=1,
        vision_width=64,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=128,
        transformer_heads=2,
        transformer_layers=2,
    ),
    # A tiny model for tests: real tokenizer vocabulary, widths multiple of 64 (clip reads heads = width // 64).
    "tiny": dict(
        embed_dim=32,
        image_resolution=32,
        vision_layers=1,
        vision_width=64,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=1,
    ),
}


def _import_clip():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clip-anytorch imports the deprecated pkg_resources
        import clip
    return clip


def clip_cache_dir() -> Path:
    return Path(os.environ.get("WTALKIT_CLIP_CACHE", os.path.expanduser("~/.cache/clip")))


def load_clip(spec: str, device="cpu"):
    """Load a CLIP model (frozen, eval mode, float32) by name or local path.

    The file is read here, never unpickled as arbitrary Python: a TorchScript archive (the published
    models) through ``torch.jit.load``, anything else as a state dict with ``weights_only=True``.
    The architecture is read from the weights (``clip.model.build_model``), as ``clip.load`` does.
    """
    clip = _import_clip()
    import torch

    names = clip.available_models()
    if spec in names:
        url = clip.clip._MODELS[spec]
        path = clip_cache_dir() / os.path.basename(url)
        if not path.is_file():
            try:
                clip.clip._download(url, str(clip_cache_dir()))
            except Exception as e:  # no network, checksum failures
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise WtalError(
                    f"cannot load CLIP '{spec}': {msg}; put the checkpoint at {path} or pass a local file path"
                ) from None
    else:
        path = Path(spec)
        if not path.is_file():
            raise WtalError(f"CLIP model '{spec}' is neither a known name ({', '.join(names)}) nor a checkpoint file")
    model = _build_clip(clip, _clip_state_dict(path), path).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(torch.device(device))


def _clip_state_dict(path: Path) -> dict:
    import torch

    from wtalkit import io as wio

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception:  # not a TorchScript archive: a plain state dict, read without running code
        pass
    return wio.load_state_dict(path, "CLIP checkpoint")


def _build_clip(clip, state_dict: dict, path: Path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return clip.model.build_model(dict(state_dict))
    except Exception as e:
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise WtalError(f"{path}: not a loadable CLIP checkpoint ({msg})") from None


def random_clip_state_dict(arch: str | dict = "tiny", seed: int = 0) -> dict:
    """State dict of a randomly initialised CLIP of the given architecture."""
    _import_clip()
    import torch
    from clip.model import CLIP

    kw = CLIP_ARCHS[arch] if isinstance(arch, str) else dict(arch)
    torch.manual_seed(seed)
    model = CLIP(**kw)
    return {k: v.clone() for k, v in model.state_dict().items()}


def save_random_clip(path, arch: str | dict = "tiny", seed: int = 0) -> Path:
    """Write a random CLIP checkpoint that ``clip.load(path)`` reads back."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_clip_state_dict(arch, seed), path)
    return path


def clip_embed_dim(model) -> int:
    return int(model.text_projection.shape[1])


def encode_texts(model, texts: list, batch_size: int = 256):
    """L2-normalised CLIP text embeddings ``[len(texts), D]`` (no grad)."""
    clip = _import_clip()
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            tok = clip.tokenize(texts[i : i + batch_size], truncate=True).to(device)
            emb = model.encode_text(tok).float()
            out.append(emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return torch.cat(out) if out else torch.zeros(0, clip_embed_dim(model))


def encode_template_texts(model, classnames: list, templates: list):
    """Normalised CLIP text embeddings ``[K, P, D]`` of every class x template, in one batched pass."""
    if not templates:
        raise WtalError("at least one prompt template is needed")
    for t in templates:
        check_template(t)
    if not classnames:
        raise WtalError("at least one class name is needed")
    texts = [t.format(name) for name in classnames for t in templates]
    return encode_texts(model, texts).view(len(classnames), len(templates), -1)


def check_template(template: str) -> str:
    """A prompt template must hold exactly one ``{}`` (the class name) and no other braces."""
    if not isinstance(template, str) or "{}" not in template:
        raise WtalError(f"prompt template '{template}' has no '{{}}' placeholder for the class name")
    if not is_prompt_template(template):
        raise WtalError(f"prompt template '{template}' must hold exactly one '{{}}' and no other braces")
    return template


def encode_class_prompts(model, classnames: list, templates: list):
    """Per class, the normalised mean of its template embeddings: ``[C, D]`` (CLIP's prompt ensembling)."""
    emb = encode_template_texts(model, classnames, templates).mean(1)
    return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def class_words(name: str) -> str:
    """The words a class name stands for in a text prompt (the one rule every prompt in wtalkit uses).

    ``BaseballPitch`` -> ``baseball pitch``, ``high_jump`` -> ``high jump``,
    ``Playing-guitar`` -> ``playing guitar``, ``TV`` -> ``tv``. Lower case throughout:
    CLIP's tokenizer lower-cases its input anyway, so case never changes an embedding.
    """
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " ").replace("-", " "))
    return " ".join(words.split()).lower()

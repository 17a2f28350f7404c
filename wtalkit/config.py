"""Typed configuration.

A run's configuration is a tree of dataclasses. It is built from a preset
(``wtalkit/presets/NAME.yaml``) or a YAML file, then ``--set key=value``
overrides (dotted keys, YAML values). Unknown keys and ill-typed values are
rejected with a one-line :class:`~wtalkit.errors.WtalError`; nothing is
silently ignored. The resolved config is printed and saved with every run.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from wtalkit.errors import WtalError

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class DataConfig:
    train_subset: str = "train"
    test_subset: str = "test"
    num_segments: int = 1000  # T snippets sampled per training video
    batch_size: int = 10
    # crop: T consecutive snippets (shorter videos padded and masked); uniform: T snippets spread over the
    # whole video, one drawn at random in each of T equal bins (UM's "random perturbation" sampling)
    sampling: Literal["crop", "uniform"] = "crop"
    similar_pairs: int = 0  # each batch starts with this many pairs of videos sharing a class (CO2-Net)


@dataclass
class CO2NetConfig:
    """CO2-Net (Hong et al., ACM MM 2021) as the CBP branch; defaults are its published THUMOS14 values."""

    rgb_dim: int = 1024  # the first rgb_dim input dims are the RGB stream, the rest optical flow
    attn_dim: int = 512  # width of the two hidden convolutions of each modality's attention (the authors' 512)
    embed_dim: int = 2048  # width of the fused features and the classifier (the authors' 2048)
    dropout: float = 0.7  # on the fused features and in the classifier (the gates and attentions use 0.5)
    topk_ratio: float = 7.0  # training top-k pooling, k = max(1, T // topk_ratio)
    video_topk_ratio: float = 10.0  # inference video score, k = max(1, T // video_topk_ratio)
    pool_kernel: int = 1  # odd; > 1 smooths CAS and attentions by a moving average (ActivityNet's ANT_CO2: 13)
    alpha1: float = 0.8  # attention-norm term
    alpha2: float = 0.8  # attention-guide term
    alpha3: float = 1.0  # co-activity similarity term (needs data.similar_pairs > 0)
    alpha4: float = 1.0  # mutual learning between the RGB and flow attentions


@dataclass
class UMConfig:
    """UM (Lee et al., AAAI 2021) as the CBP branch; defaults are its published THUMOS14 values."""

    hidden_dim: int = 2048
    dropout: float = 0.7
    r_act: float = 9.0  # k_act = T // r_act snippets of largest feature magnitude (and top-k CAS)
    r_bkg: float = 4.0  # k_bkg = T // r_bkg snippets of smallest feature magnitude
    alpha: float = 0.0005  # weight of the feature-magnitude (uncertainty) loss
    beta: float = 1.0  # weight of the background-entropy loss
    margin: float = 100.0  # feature magnitude of action snippets


@dataclass
class CBPConfig:
    arch: Literal["transformer", "co2net", "um"] = "transformer"  # which WTAL model is the CBP branch
    # transformer (wtalkit's own, the paper's description):
    hidden_dim: int = 256
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.3
    input_dropout: float = 0.5  # feature dropout on the (LayerNorm-ed) input snippets
    topk_ratio: int = 8  # top-k pooling with k = max(1, T // topk_ratio)
    attn_window: int = 0  # local self-attention span in snippets (0 = global)
    conv_kernel: int = 3  # the depthwise temporal convolution after the embedding (odd)
    # warm-up only, every architecture: temporal Hide-and-Seek -- each run of `hide_len` snippets of a
    # training crop is replaced by the training split's mean feature with probability `hide_prob`
    hide_prob: float = 0.0
    hide_len: int = 8
    # every architecture: "standardize" subtracts the training split's per-dimension mean and divides by
    # its std before the model; warm-up measures them, the checkpoint keeps them (buffers)
    input_norm: Literal["none", "standardize"] = "none"
    co2net: CO2NetConfig = field(default_factory=CO2NetConfig)
    um: UMConfig = field(default_factory=UMConfig)


@dataclass
class VLPConfig:
    clip_model: str = "ViT-B/16"  # a clip-anytorch name (standard cache) or a checkpoint path
    n_prompts: int = 16  # learnable prompt vectors, split before / after the class name
    prompt_init_std: float = 0.01
    temporal_layers: int = 2
    temporal_heads: int = 8
    temporal_window: int = 19  # local attention span in snippets, ActionFormer-style (0 = global)
    dropout: float = 0.1
    templates: list[str] = field(default_factory=lambda: ["a video of a person doing {}."])  # raw (zero-shot) VLP
    background: str = "background"  # a background prompt in the VLP softmax, never reported ("" disables)


@dataclass
class PseudoConfig:
    delta_h: float = 0.3
    delta_l: float = 0.1


@dataclass
class LossConfig:
    use_kd: bool = True
    use_fb: bool = True
    lambda_fb: float = 0.05
    tau: float = 0.07


@dataclass
class OptimConfig:
    lr: float = 1e-4
    # the B and F steps' rate (0: optim.lr). They fine-tune branches that are already trained, so a
    # preset whose warm-up needs a large rate gives them a smaller one (README "The rounds' loss of ground")
    alternate_lr: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # 0 disables

    def rate(self, stage: Literal["warmup", "alternate"]) -> float:
        """The learning rate of a training stage."""
        return self.alternate_lr if stage == "alternate" and self.alternate_lr > 0 else self.lr


@dataclass
class TrainConfig:
    warmup_epochs: int = 100
    rounds: int = 3
    b_epochs: int = 5  # epochs of VLP training per B step
    f_epochs: int = 5  # epochs of CBP training per F step
    schedule: Literal["alternate", "only-b", "only-f"] = "alternate"
    complementary: bool = False  # true: B step distils only CBP's confident background, F step only VLP's foreground
    fuse: Literal["avg", "weighted"] = "avg"  # only-b: how CBP and VLP scores are fused at inference
    fuse_weight: float = 0.5  # weight of CBP for fuse=weighted
    # Rules the paper leaves open (README "Alternate training: the paper and wtalkit's reading"):
    conflict: Literal["teacher", "uncertain"] = (
        "teacher"  # uncertain: entries the branches confidently disagree on are ignored
    )
    f_cls_weight: float = 1.0  # weight of CBP's MIL classification loss in the F step (0: only L_kd + λ·L_fb)
    select: Literal["last", "agreement"] = (
        "last"  # the round alternate.pt keeps (agreement: label-free, training split)
    )
    seed: int = 0
    device: str = "auto"  # cpu, cuda, cuda:N or auto (cuda when present); --device overrides it
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on a GPU, fp32 on the CPU


@dataclass
class InferConfig:
    # classes whose video score is > theta_cls are localized (the top one when none is). The paper's 0.85 can only
    # work on per-class scores; the transformer and CO2-Net score videos with a softmax over classes, where any
    # threshold >= 0.5 keeps exactly one class per video, so the default is CO2-Net's and UM's 0.2
    theta_cls: float = 0.2
    theta_loc: list[float] = field(default_factory=lambda: [0.45])  # thresholds on class scores ([] = none)
    theta_act: list[float] = field(default_factory=list)  # thresholds on class-agnostic actionness ([] = none)
    upsample: int = 1  # scores interpolated linearly to this many points per snippet before thresholding (UM: 24)
    nms: Literal["soft", "hard"] = "soft"  # Gaussian soft-NMS, or hard NMS at nms_iou
    nms_sigma: float = 0.5
    nms_iou: float = 0.6  # hard NMS: proposals overlapping a better one by more than this are dropped
    max_proposals: int = 200  # per video, after soft-NMS
    min_score: float = 0.001  # proposals whose score decays below this are dropped
    proposals: Literal["max", "oic"] = "max"  # proposal score: max inside (the paper) or outer-inner contrast
    oic_outer: float = 0.25  # oic: outer band on each side, as a fraction of the proposal's length
    oic_gamma: float = 0.2  # oic: weight of the class's video score
    oic_zero_below: bool = False  # oic: score a run on its class's scores with those below its threshold zeroed (UM)


@dataclass
class EvalConfig:
    tiou: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])


@dataclass
class Config:
    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    cbp: CBPConfig = field(default_factory=CBPConfig)
    vlp: VLPConfig = field(default_factory=VLPConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self, active_only: bool = False) -> str:
        """The config as YAML; ``active_only`` leaves out the ``cbp`` sub-sections of the architectures
        ``cbp.arch`` does not use (``cbp.co2net``, ``cbp.um``): what a console shows. Saved configs are whole."""
        d = self.to_dict()
        if active_only:
            for arch in ("co2net", "um"):
                if self.cbp.arch != arch:
                    d["cbp"].pop(arch)
        return yaml.safe_dump(d, sort_keys=False)

    def validate(self) -> Config:
        d, c, v, t, i = self.data, self.cbp, self.vlp, self.train, self.infer
        check_all(
            [
                (d.batch_size >= 1, "data.batch_size must be >= 1"),
                (d.num_segments >= 1, "data.num_segments must be >= 1"),
                (
                    0 <= 2 * d.similar_pairs <= d.batch_size,
                    "data.similar_pairs must be >= 0 and at most half of data.batch_size",
                ),
                (
                    c.hidden_dim >= 1 and c.num_heads >= 1 and c.num_layers >= 0,
                    "cbp.hidden_dim and cbp.num_heads must be >= 1, cbp.num_layers >= 0",
                ),
                (c.hidden_dim % c.num_heads == 0, "cbp.hidden_dim must be divisible by cbp.num_heads"),
                (c.mlp_ratio > 0, "cbp.mlp_ratio must be positive"),
                (
                    0 <= c.dropout < 1 and 0 <= c.input_dropout < 1,
                    "cbp.dropout and cbp.input_dropout must be in [0, 1)",
                ),
                (c.topk_ratio >= 1, "cbp.topk_ratio must be >= 1"),
                (c.attn_window >= 0, "cbp.attn_window must be >= 0 (0 = global attention)"),
                (c.conv_kernel >= 1 and c.conv_kernel % 2 == 1, "cbp.conv_kernel must be an odd number >= 1"),
                (0 <= c.hide_prob < 1 and c.hide_len >= 1, "cbp.hide_prob must be in [0, 1) and cbp.hide_len >= 1"),
                (
                    c.co2net.rgb_dim > 0 and c.co2net.attn_dim >= 1 and c.co2net.embed_dim >= 1,
                    "cbp.co2net.rgb_dim, cbp.co2net.attn_dim and cbp.co2net.embed_dim must be >= 1",
                ),
                (
                    0 <= c.co2net.dropout < 1 and 0 <= c.um.dropout < 1,
                    "cbp.co2net.dropout and cbp.um.dropout must be in [0, 1)",
                ),
                (
                    c.co2net.topk_ratio >= 1 and c.co2net.video_topk_ratio >= 1,
                    "cbp.co2net.topk_ratio and cbp.co2net.video_topk_ratio must be >= 1",
                ),
                (
                    c.co2net.pool_kernel >= 1 and c.co2net.pool_kernel % 2 == 1,
                    "cbp.co2net.pool_kernel must be an odd number >= 1",
                ),
                (
                    min(c.co2net.alpha1, c.co2net.alpha2, c.co2net.alpha3, c.co2net.alpha4) >= 0,
                    "cbp.co2net.alpha1..alpha4 must be >= 0",
                ),
                (c.um.hidden_dim >= 1, "cbp.um.hidden_dim must be >= 1"),
                (c.um.r_act >= 1 and c.um.r_bkg >= 1, "cbp.um.r_act and cbp.um.r_bkg must be >= 1"),
                (
                    c.um.alpha >= 0 and c.um.beta >= 0 and c.um.margin > 0,
                    "cbp.um.alpha and cbp.um.beta must be >= 0, cbp.um.margin positive",
                ),
                (v.n_prompts >= 0, "vlp.n_prompts must be >= 0"),
                (v.prompt_init_std >= 0, "vlp.prompt_init_std must be >= 0"),
                (
                    v.temporal_layers >= 0 and v.temporal_heads >= 1,
                    "vlp.temporal_layers must be >= 0, vlp.temporal_heads >= 1",
                ),
                (v.temporal_window >= 0, "vlp.temporal_window must be >= 0 (0 = global)"),
                (0 <= v.dropout < 1, "vlp.dropout must be in [0, 1)"),
                (
                    len(v.templates) >= 1 and all("{}" in x for x in v.templates),
                    "vlp.templates must be a non-empty list of strings with one '{}'",
                ),
                (
                    all(is_prompt_template(x) for x in v.templates),
                    "each of vlp.templates must hold exactly one '{}' and no other braces",
                ),
                (
                    0 <= self.pseudo.delta_l <= self.pseudo.delta_h <= 1,
                    "need 0 <= pseudo.delta_l <= pseudo.delta_h <= 1",
                ),
                (self.loss.lambda_fb >= 0, "loss.lambda_fb must be >= 0"),
                (self.loss.tau > 0, "loss.tau must be positive"),
                (self.optim.lr > 0, "optim.lr must be positive"),
                (self.optim.alternate_lr >= 0, "optim.alternate_lr must be >= 0 (0: optim.lr)"),
                (
                    self.optim.weight_decay >= 0 and self.optim.grad_clip >= 0,
                    "optim.weight_decay and optim.grad_clip must be >= 0",
                ),
                (
                    t.warmup_epochs >= 0 and t.b_epochs >= 0 and t.f_epochs >= 0,
                    "train.warmup_epochs, train.b_epochs and train.f_epochs must be >= 0",
                ),
                (t.rounds >= 1, "train.rounds must be >= 1"),
                (0 <= t.fuse_weight <= 1, "train.fuse_weight must be in [0, 1]"),
                (t.f_cls_weight >= 0, "train.f_cls_weight must be >= 0"),
                (t.seed >= 0, "train.seed must be >= 0"),
                (0 <= i.theta_cls <= 1, "infer.theta_cls must be in [0, 1]"),
                (
                    all(0 <= x <= 1 for x in i.theta_loc + i.theta_act),
                    "infer.theta_loc and infer.theta_act must be lists of values in [0, 1]",
                ),
                (
                    len(i.theta_loc) + len(i.theta_act) >= 1,
                    "infer.theta_loc and infer.theta_act cannot both be empty",
                ),
                (i.upsample >= 1, "infer.upsample must be >= 1"),
                (0 < i.nms_iou <= 1, "infer.nms_iou must be in (0, 1]"),
                (i.nms_sigma > 0, "infer.nms_sigma must be positive"),
                (i.max_proposals >= 1, "infer.max_proposals must be >= 1"),
                (i.min_score <= 1, "infer.min_score must be <= 1"),
                (i.oic_outer > 0 and i.oic_gamma >= 0, "infer.oic_outer must be positive and infer.oic_gamma >= 0"),
                (
                    len(self.eval.tiou) >= 1 and all(0 < x <= 1 for x in self.eval.tiou),
                    "eval.tiou must be a non-empty list in (0, 1]",
                ),
            ]
        )
        return self


def is_prompt_template(template) -> bool:
    """A prompt template holds exactly one ``{}`` (where the class name goes) and no other braces."""
    if not isinstance(template, str) or template.count("{}") != 1:
        return False
    rest = template.replace("{}", "")
    return "{" not in rest and "}" not in rest


def check_all(checks) -> None:
    """Raise the first failed ``(ok, message)`` of a config's value checks as a one-line error."""
    for ok, msg in checks:
        if not ok:
            raise WtalError(f"invalid config: {msg}")


def _coerce(value, typ, key: str):
    """Check/convert one leaf value against its annotated type (bool, int, float, str, list[T], Literal)."""
    origin = typing.get_origin(typ)
    if origin is typing.Literal:
        choices = typing.get_args(typ)
        if value in choices and isinstance(value, str):
            return value
        raise WtalError(f"config key '{key}' must be one of {', '.join(map(str, choices))}, got {value!r}")
    if origin is list:
        (elem,) = typing.get_args(typ)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise WtalError(f"config key '{key}' expects a list, got {value!r}")
        return [_coerce(x, elem, f"{key}[{n}]") for n, x in enumerate(value)]
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise WtalError(f"config key '{key}' expects true/false, got {value!r}")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise WtalError(f"config key '{key}' expects an integer, got {value!r}")
    if typ is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise WtalError(f"config key '{key}' expects a finite number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        raise WtalError(f"config key '{key}' expects a string, got {value!r}")
    raise TypeError(f"config key '{key}': unsupported annotation {typ!r}")  # a programming error, not user input


def from_dict(cls, data, prefix: str = ""):
    """Strictly build the config dataclass ``cls`` from a mapping (then ``validate()`` it when it can).

    Unknown keys, ill-typed values and values out of range are one-line errors.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WtalError(f"config section '{prefix.rstrip('.') or 'root'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - names)
    if unknown:
        where = f" in section '{prefix.rstrip('.')}'" if prefix else ""
        raise WtalError(f"unknown config key '{prefix}{unknown[0]}'{where}; known keys: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = from_dict(typ, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, typ, prefix + name)
    obj = cls(**kwargs)
    return obj.validate() if hasattr(obj, "validate") and not prefix else obj


def merge(base: dict, over: dict) -> dict:
    """``over`` applied on ``base``, section by section."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_yaml(path: Path) -> dict:
    """A YAML mapping from a file (UTF-8); anything else is a one-line error."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise WtalError(f"{path}: a config file must be UTF-8 text") from None
    except yaml.YAMLError as e:
        raise WtalError(f"{path}: malformed YAML ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise WtalError(f"{path}: cannot read ({e.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise WtalError(f"{path}: a config file must be a YAML mapping")
    return data


def parse_override(text: str) -> dict:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}`` with ``value`` parsed as YAML."""
    if "=" not in text:
        raise WtalError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise WtalError(f"--set expects key=value, got '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def resolve(cls, source: str | None = None, overrides=(), base: dict | None = None, preset_dir: Path | None = None):
    """A config of dataclass ``cls``: defaults <- ``base`` <- YAML file or preset ``source`` <- ``--set`` overrides."""
    data: dict = dict(base or {})
    if source:
        path = Path(source)
        if path.suffix in (".yaml", ".yml") or path.is_file() or preset_dir is None:
            if not path.is_file():
                raise WtalError(
                    f"config file not found: {source}" + ("" if preset_dir else " (this command has no presets)")
                )
            data = merge(data, read_yaml(path))
        elif (preset_dir / f"{source}.yaml").exists():
            data = merge(data, read_yaml(preset_dir / f"{source}.yaml"))
        else:
            presets = sorted(p.stem for p in preset_dir.glob("*.yaml"))
            raise WtalError(f"unknown config '{source}': not a file, and presets are {', '.join(presets)}")
    for o in overrides:
        data = merge(data, parse_override(o))
    return from_dict(cls, data)


def load_config(source: str | None = None, overrides=(), base: dict | None = None) -> Config:
    """Resolve a run config.

    ``source`` is a preset name (``thumos14``, ``anet12``, ...) or a YAML path;
    ``base`` (e.g. a checkpoint's saved config) is applied first when given.
    """
    return resolve(Config, source, overrides, base, PRESET_DIR)


REMOVED_KEYS = {"data": ("num_workers",), "cbp": ("max_len",)}  # read and ignored in configs saved by wtalkit 0.1


def config_from_dict(data: dict) -> Config:
    """A saved config (checkpoint, ``config.yaml``); keys that wtalkit 0.1 wrote and never read are dropped."""
    if isinstance(data, dict):
        data = {
            k: ({kk: vv for kk, vv in v.items() if kk not in REMOVED_KEYS.get(k, ())} if isinstance(v, dict) else v)
            for k, v in data.items()
        }
    return from_dict(Config, data)

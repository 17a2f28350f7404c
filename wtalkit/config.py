"""Typed configuration.

A run's configuration is a tree of dataclasses. It is built from a preset
(``wtalkit/presets/NAME.yaml``) or a YAML file, then ``--set key=value``
overrides (dotted keys, YAML values). Unknown keys and ill-typed values are
rejected with a one-line :class:`~wtalkit.errors.WtalError`; nothing is
silently ignored. The resolved config is printed and saved with every run.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from wtalkit.errors import WtalError

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class DataConfig:
    train_subset: str = "train"
    test_subset: str = "test"
    num_segments: int = 1000  # T consecutive snippets sampled per training video
    batch_size: int = 10
    num_workers: int = 0


@dataclass
class CBPConfig:
    hidden_dim: int = 256
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.3
    input_dropout: float = 0.5  # feature dropout on the (LayerNorm-ed) input snippets
    topk_ratio: int = 8  # top-k pooling with k = max(1, T // topk_ratio)
    max_len: int = 4096  # longest sequence the positional encoding covers (longer is interpolated)


@dataclass
class VLPConfig:
    clip_model: str = "ViT-B/16"  # a clip-anytorch name (standard cache) or a checkpoint path
    n_prompts: int = 16  # learnable prompt vectors, split before / after the class name
    prompt_init_std: float = 0.01
    temporal_layers: int = 2
    temporal_heads: int = 8
    temporal_window: int = 19  # local attention span in snippets, ActionFormer-style (0 = global)
    dropout: float = 0.1
    templates: list = field(default_factory=lambda: ["a video of a person doing {}."])  # raw (zero-shot) VLP
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
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # 0 disables


@dataclass
class TrainConfig:
    warmup_epochs: int = 100
    rounds: int = 3
    b_epochs: int = 5  # epochs of VLP training per B step
    f_epochs: int = 5  # epochs of CBP training per F step
    schedule: str = "alternate"  # alternate | only-b | only-f
    complementary: bool = False  # true: B step distils only CBP's confident background, F step only VLP's foreground
    fuse: str = "avg"  # only-b: how CBP and VLP scores are fused at inference (avg | weighted)
    fuse_weight: float = 0.5  # weight of CBP for fuse=weighted
    seed: int = 0
    device: str = "cpu"


@dataclass
class InferConfig:
    theta_cls: float = 0.85
    theta_loc: list = field(default_factory=lambda: [0.45])
    nms_sigma: float = 0.5
    max_proposals: int = 200  # per video, after soft-NMS
    min_score: float = 0.001  # proposals whose score decays below this are dropped


@dataclass
class EvalConfig:
    tiou: list = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])


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

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> "Config":
        checks = [
            (self.train.schedule in ("alternate", "only-b", "only-f"), "train.schedule must be alternate, only-b or only-f"),
            (self.train.fuse in ("avg", "weighted"), "train.fuse must be avg or weighted"),
            (0 <= self.pseudo.delta_l <= self.pseudo.delta_h <= 1, "need 0 <= pseudo.delta_l <= pseudo.delta_h <= 1"),
            (self.loss.tau > 0, "loss.tau must be positive"),
            (self.optim.lr > 0, "optim.lr must be positive"),
            (self.data.num_segments >= 1, "data.num_segments must be >= 1"),
            (self.cbp.hidden_dim % self.cbp.num_heads == 0, "cbp.hidden_dim must be divisible by cbp.num_heads"),
            (len(self.infer.theta_loc) >= 1 and all(0 <= t <= 1 for t in self.infer.theta_loc), "infer.theta_loc must be a non-empty list in [0, 1]"),
            (len(self.eval.tiou) >= 1 and all(0 < t <= 1 for t in self.eval.tiou), "eval.tiou must be a non-empty list in (0, 1]"),
            (self.vlp.n_prompts >= 0, "vlp.n_prompts must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise WtalError(f"invalid config: {msg}")
        return self


def _coerce(value, typ, key: str):
    """Check/convert one leaf value against its annotated type."""
    origin = typing.get_origin(typ) or typ
    if typ is bool or origin is bool:
        if isinstance(value, bool):
            return value
        raise WtalError(f"config key '{key}' expects true/false, got {value!r}")
    if typ is int or origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise WtalError(f"config key '{key}' expects an integer, got {value!r}")
    if typ is float or origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise WtalError(f"config key '{key}' expects a number, got {value!r}")
    if typ is str or origin is str:
        if isinstance(value, str):
            return value
        raise WtalError(f"config key '{key}' expects a string, got {value!r}")
    if typ is list or origin is list:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, (list, tuple)):
            return list(value)
        raise WtalError(f"config key '{key}' expects a list, got {value!r}")
    return value


def _build(cls, data, prefix: str = ""):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WtalError(f"config section '{prefix or 'root'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in section '{prefix.rstrip('.')}'" if prefix else ""
        raise WtalError(f"unknown config key '{prefix}{unknown[0]}'{where}; known keys: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, typ, prefix + name)
    return cls(**kwargs)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
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


def load_config(source: str | None = None, overrides=(), base: dict | None = None) -> Config:
    """Resolve a config.

    ``source`` is a preset name (``thumos14``, ``anet12``, ...) or a YAML path;
    ``base`` (e.g. a checkpoint's saved config) is applied first when given.
    """
    data: dict = dict(base or {})
    if source:
        path = Path(source)
        if path.suffix in (".yaml", ".yml") or path.is_file():
            if not path.exists():
                raise WtalError(f"config file not found: {source}")
            data = _merge(data, _read_yaml(path))
        elif (PRESET_DIR / f"{source}.yaml").exists():
            data = _merge(data, _read_yaml(PRESET_DIR / f"{source}.yaml"))
        else:
            raise WtalError(f"unknown config '{source}': not a file, and presets are {', '.join(list_presets())}")
    for o in overrides:
        data = _merge(data, parse_override(o))
    return _build(Config, data).validate()


def config_from_dict(data: dict) -> Config:
    return _build(Config, data).validate()

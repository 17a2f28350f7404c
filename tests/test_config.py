import pytest

from wtalkit.config import list_presets, load_config, parse_override
from wtalkit.errors import WtalError


def test_presets_carry_paper_values():
    assert {"thumos14", "anet12", "demo"} <= set(list_presets())
    t = load_config("thumos14")
    assert (t.data.num_segments, t.pseudo.delta_h, t.pseudo.delta_l) == (1000, 0.3, 0.1)
    assert (t.infer.theta_cls, t.infer.theta_loc, t.loss.lambda_fb, t.loss.tau) == (0.2, [0.45], 0.05, 0.07)
    assert (t.optim.lr, t.vlp.n_prompts, t.vlp.temporal_layers, t.vlp.clip_model) == (1e-4, 16, 2, "ViT-B/16")
    a = load_config("anet12")
    assert a.data.num_segments == 400 and a.eval.tiou[0] == 0.5 and a.eval.tiou[-1] == 0.95


def test_alternate_steps_have_their_own_rate():
    demo = load_config("demo")
    assert (demo.optim.rate("warmup"), demo.optim.rate("alternate")) == (1e-3, 1e-4)  # warm-up x 10, steps thumos14's
    t = load_config("thumos14")
    assert t.optim.alternate_lr == 0 and t.optim.rate("alternate") == t.optim.rate("warmup") == 1e-4  # 0: optim.lr
    c = load_config("demo", ["optim.alternate_lr=0"])
    assert c.optim.rate("alternate") == 1e-3


def test_overrides_typed():
    c = load_config("thumos14", ["train.seed=7", "infer.theta_loc=[0.2, 0.4]", "loss.use_fb=false", "optim.lr=3e-4"])
    assert c.train.seed == 7 and c.infer.theta_loc == [0.2, 0.4] and c.loss.use_fb is False and c.optim.lr == 3e-4
    assert parse_override("a.b=1") == {"a": {"b": 1}}


@pytest.mark.parametrize(
    "bad, msg",
    [
        (["train.nope=1"], "unknown config key 'train.nope'"),
        (["nosection.x=1"], "unknown config key 'nosection'"),
        (["train.seed=abc"], "expects an integer"),
        (["loss.use_kd=3"], "expects true/false"),
        (["train.schedule=sideways"], "train.schedule"),
        (["pseudo.delta_l=0.9"], "delta_l"),
        (["noequals"], "key=value"),
        (["cbp.attn_window=-1"], "cbp.attn_window"),
        (["cbp.conv_kernel=4"], "cbp.conv_kernel"),
        (["cbp.hide_prob=1"], "cbp.hide_prob"),
        (["cbp.hide_len=0"], "cbp.hide_len"),
        (["optim.alternate_lr=-1e-4"], "optim.alternate_lr"),
        (["optim.alternate_lr=abc"], "optim.alternate_lr"),
    ],
)
def test_rejects_bad_values(bad, msg):
    with pytest.raises(WtalError, match=msg):
        load_config("thumos14", bad)


def test_config_files(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("train:\n  seed: 5\n")
    assert load_config(str(good)).train.seed == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(WtalError, match="malformed YAML"):
        load_config(str(bad))
    unknown = tmp_path / "u.yaml"
    unknown.write_text("trian:\n  seed: 5\n")
    with pytest.raises(WtalError, match="unknown config key 'trian'"):
        load_config(str(unknown))
    with pytest.raises(WtalError, match="unknown config 'nope'"):
        load_config("nope")
    with pytest.raises(WtalError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_the_console_shows_only_the_active_architectures_section():
    import yaml

    shown = yaml.safe_load(load_config("demo").to_yaml(active_only=True))
    assert "co2net" not in shown["cbp"] and "um" not in shown["cbp"]
    shown = yaml.safe_load(load_config("demo-co2net").to_yaml(active_only=True))
    assert "co2net" in shown["cbp"] and "um" not in shown["cbp"]
    whole = yaml.safe_load(load_config("demo").to_yaml())  # what run folders save: everything
    assert "co2net" in whole["cbp"] and "um" in whole["cbp"]

"""The VLP branch on a tiny random CLIP loaded through clip-anytorch's own ``clip.load``."""

import pytest
import torch
import torch.nn.functional as F

from wtalkit.config import VLPConfig
from wtalkit.errors import WtalError
from wtalkit.models.clip import _import_clip, class_words, encode_class_prompts, load_clip, save_random_clip
from wtalkit.models.vlp import RawVLP, VLPBranch

NAMES = ["run", "pole vault", "throw discus from a circle", "cliff diving"]  # different token lengths


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory):
    path = save_random_clip(tmp_path_factory.mktemp("clip") / "c.pt", "tiny")
    return load_clip(str(path))


def make(clip_model, n_prompts=4, **kw):
    torch.manual_seed(0)
    cfg = VLPConfig(clip_model="tiny.pt", n_prompts=n_prompts, temporal_heads=4, **kw)
    return VLPBranch(clip_model, NAMES, cfg, vis_dim=32)


def test_prompt_free_text_features_reproduce_clip(clip_model):
    clip = _import_clip()
    branch = make(clip_model, n_prompts=0, background="")
    with torch.no_grad():
        ref = F.normalize(clip_model.encode_text(clip.tokenize(NAMES)), dim=-1)
        got = branch.text_features()
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # the classes really differ (a wrong EOT position would often read the same padding token)
    assert (got[:, None] - got[None]).abs().sum(-1).triu(1)[0, 1:].min() > 1e-3


def test_prompted_text_features_match_manual_sequence(clip_model):
    clip = _import_clip()
    branch = make(clip_model, n_prompts=5, background="")  # 2 before the name, 3 after
    prompts = branch.prompt.prompts.detach()
    manual = []
    with torch.no_grad():
        for name in NAMES:
            ids = clip.tokenize([name])[0]
            n = int((ids == ids.max()).nonzero()[0]) - 1  # name tokens between SOT and EOT
            tok = clip_model.token_embedding(ids)
            seq = torch.cat([tok[:1], prompts[:2], tok[1 : 1 + n], prompts[2:], tok[1 + n :]])[:77]
            x = seq + clip_model.positional_embedding
            x = clip_model.transformer(x[:, None]).squeeze(1)  # full 77-token causal pass
            x = clip_model.ln_final(x)[1 + 5 + n] @ clip_model.text_projection
            manual.append(F.normalize(x, dim=-1))
        got = branch.text_features()
    torch.testing.assert_close(got, torch.stack(manual), atol=1e-5, rtol=1e-5)


def test_gradients_reach_prompts_and_temporal_not_clip(clip_model):
    branch = make(clip_model).train()
    vis = torch.randn(2, 12, 32)
    out = branch(vis)
    target = torch.randint(0, len(NAMES), (2, 12))
    F.nll_loss(out["probs"].clamp_min(1e-8).log().flatten(0, 1), target.flatten()).backward()
    assert branch.prompt.prompts.grad is not None and branch.prompt.prompts.grad.abs().sum() > 0
    assert branch.temporal.blocks[0].mlp[-1].weight.grad.abs().sum() > 0
    assert branch.temporal.blocks[0].attn.out_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in clip_model.parameters())
    assert not any(p is q for p in branch.parameters() for q in clip_model.parameters())
    assert not clip_model.training  # train() keeps CLIP in eval mode


def test_forward_shapes_probs_and_identity_start(clip_model):
    branch = make(clip_model, background="").eval()
    vis = torch.randn(3, 10, 32)
    with torch.no_grad():
        out = branch(vis)
    assert out["probs"].shape == out["logits"].shape == (3, 10, len(NAMES))
    assert out["features"].shape == (3, 10, 32) and out["text"].shape == (len(NAMES), 32)
    torch.testing.assert_close(out["probs"].sum(-1), torch.ones(3, 10))
    torch.testing.assert_close(out["features"], vis)  # zero-initialised output projections
    scale = clip_model.logit_scale.exp()
    torch.testing.assert_close(out["logits"], scale * F.normalize(vis, dim=-1) @ out["text"].t())


def test_masking_isolates_padding(clip_model):
    branch = make(clip_model)
    with torch.no_grad():  # make the temporal blocks non-trivial
        for p in branch.temporal.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    branch.eval()
    vis = torch.randn(2, 9, 32)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    other = vis.clone()
    other[1, 6:] = torch.randn(3, 32) * 10
    with torch.no_grad():
        a, b = branch(vis, mask), branch(other, mask)
        unmasked = branch(vis)
    torch.testing.assert_close(a["probs"][1, :6], b["probs"][1, :6])
    torch.testing.assert_close(a["probs"][0], b["probs"][0])
    assert (a["probs"][1, :6] - unmasked["probs"][1, :6]).abs().max() > 1e-6  # the mask does something
    with torch.no_grad():  # a fully padded video stays finite
        mask[1] = False
        assert torch.isfinite(branch(vis, mask)["probs"]).all()


def test_state_dict_holds_trainable_parts_only(clip_model):
    branch = make(clip_model)
    sd = branch.state_dict()
    assert not any(k.startswith("clip") for k in sd)
    assert sd["_extra_state"] == {"clip_model": "tiny.pt", "classnames": NAMES}
    trainable = {k for k, p in branch.named_parameters()}
    assert trainable == {k for k in sd if k != "_extra_state"}
    other = make(clip_model)
    with torch.no_grad():
        other.prompt.prompts.zero_()
    other.load_state_dict(sd)
    torch.testing.assert_close(other.prompt.prompts, branch.prompt.prompts)


def test_text_cache_follows_prompt_updates(clip_model):
    branch = make(clip_model).eval()
    with torch.no_grad():
        t0 = branch.text_features()
        assert branch.text_features() is t0  # cached
        branch.prompt.prompts.add_(torch.randn_like(branch.prompt.prompts))  # as an optimizer step does
        t1 = branch.text_features()
    assert (t1 - t0).abs().max() > 1e-4
    torch.testing.assert_close(t1, branch.text_features().detach())  # grad-enabled path agrees


def test_dimension_and_name_errors(clip_model):
    with pytest.raises(WtalError, match="dimension 512 but CLIP model"):
        VLPBranch(clip_model, NAMES, VLPConfig(temporal_heads=4), vis_dim=512)
    branch = make(clip_model)
    with pytest.raises(WtalError):
        branch(torch.randn(1, 4, 16))
    with pytest.raises(WtalError, match="does not fit"):
        VLPBranch(clip_model, [" ".join(["word"] * 70)], VLPConfig(n_prompts=16, temporal_heads=4), vis_dim=32)
    with pytest.raises(WtalError):
        VLPBranch(clip_model, NAMES, VLPConfig(temporal_heads=5), vis_dim=32)


def test_raw_vlp_is_zero_shot_clip(clip_model):
    templates = ["a video of a person doing {}.", "{}"]
    vis = torch.randn(7, 32)
    with torch.no_grad():
        probs = RawVLP(clip_model, NAMES, templates)(vis[None])["probs"][0]
    text = encode_class_prompts(clip_model, [class_words(n) for n in NAMES], templates)
    scale = float(clip_model.logit_scale.exp())
    torch.testing.assert_close(probs, (scale * F.normalize(vis, dim=-1) @ text.t()).softmax(-1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(7))
    with pytest.raises(WtalError):
        RawVLP(clip_model, NAMES, templates)(torch.randn(1, 7, 31))


def test_device_moves_reach_clip(tmp_path):
    clip_model = load_clip(str(save_random_clip(tmp_path / "c.pt", "tiny")))
    branch = make(clip_model)
    branch.to(torch.device("meta"))  # stands in for .cuda(): CLIP (unregistered) must follow
    assert clip_model.token_embedding.weight.device.type == "meta"
    assert branch.prompt.prompts.device.type == "meta" and branch.prompt.token_ids.device.type == "meta"


def test_background_prompt_takes_part_in_softmax_but_is_not_reported(clip_model):
    branch = make(clip_model, n_prompts=2).eval()
    plain = make(clip_model, n_prompts=2, background="").eval()
    vis = torch.randn(1, 6, 32)
    with torch.no_grad():
        out, ref = branch(vis), plain(vis)
    assert out["probs"].shape == ref["probs"].shape == (1, 6, len(NAMES))
    assert torch.all(out["probs"].sum(-1) < 1.0)  # the background column took some mass
    torch.testing.assert_close(ref["probs"].sum(-1), torch.ones(1, 6))
    assert branch.text_features().shape[0] == len(NAMES) + 1

import pytest
import torch

from wtalkit.errors import WtalError
from wtalkit.models.clip import class_words, clip_embed_dim, encode_class_prompts, load_clip


def test_class_words():
    assert class_words("BaseballPitch") == "baseball pitch"
    assert class_words("high_jump") == "high jump"
    assert class_words("CleanAndJerk") == "clean and jerk"
    assert class_words("Playing-guitar") == "playing guitar"


def test_load_clip_through_clip_load(tiny_clip_path):
    model = load_clip(str(tiny_clip_path))
    assert clip_embed_dim(model) == 32
    assert not any(p.requires_grad for p in model.parameters())


def test_load_clip_errors(tmp_path):
    with pytest.raises(WtalError, match="neither a known name"):
        load_clip(str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WtalError, match="not a loadable CLIP checkpoint"):
        load_clip(str(junk))


def test_prompt_ensemble_is_mean_of_templates(tiny_clip_path):
    model = load_clip(str(tiny_clip_path))
    both = encode_class_prompts(model, ["long jump", "diving"], ["a photo of {}.", "a video of {}."])
    one = encode_class_prompts(model, ["long jump"], ["a photo of {}."])
    two = encode_class_prompts(model, ["long jump"], ["a video of {}."])
    ref = one[0] + two[0]
    torch.testing.assert_close(both[0], ref / ref.norm(), atol=1e-5, rtol=1e-5)
    with pytest.raises(WtalError, match="placeholder"):
        encode_class_prompts(model, ["x"], ["no placeholder"])

"""Shared fixtures: a tiny CLIP checkpoint and a tiny synthetic dataset, built by the tests themselves."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory):
    from wtalkit.models.clip import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.pt", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_clip_path):
    """8 train + 4 test videos on the real THUMOS14 layout, 25 fps / 32-frame snippets."""
    from wtalkit.data.synthetic import I3DStyle, make_synthetic_dataset, thumos_layout
    from wtalkit.models.clip import class_words, encode_class_prompts, load_clip
    from wtalkit.timeaxis import SnippetGrid

    root = tmp_path_factory.mktemp("data") / "tiny"
    model = load_clip(str(tiny_clip_path))
    classes = thumos_layout()["classes"]
    text = encode_class_prompts(model, [class_words(c) for c in classes], ["a video of a person doing {}."]).numpy()
    make_synthetic_dataset(
        root,
        text_embeddings=text,
        n_train=8,
        n_test=4,
        cbp=I3DStyle(dim=32),
        grid=SnippetGrid(25.0, 32, 32),
        min_duration=30,
        max_duration=150,
        seed=0,
    )
    return root


TINY_SETS = [
    "data.num_segments=64",
    "data.batch_size=4",
    "cbp.hidden_dim=32",
    "cbp.num_heads=2",
    "cbp.num_layers=1",
    "train.warmup_epochs=3",
    "optim.lr=0.003",
    "optim.alternate_lr=0",  # the tiny runs' B and F steps keep the tiny warm-up's rate
    "vlp.temporal_heads=2",
    "train.b_epochs=1",
    "train.f_epochs=1",
]

"""On a CUDA GPU: warmup -> alternate -> localize run on the device and agree with the CPU run.

Skipped cleanly where there is no GPU (CI). The same tiny run is trained once on the CPU and once on
cuda; the GPU's kernels are not bit-identical to the CPU's, so the mAPs are compared within a tolerance.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_SETS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _run(tiny_dataset, tiny_clip_path, out, device):
    from wtalkit.config import load_config
    from wtalkit.localize.evaluate import evaluate_run
    from wtalkit.train.alternate import train_alternate
    from wtalkit.train.warmup import train_warmup

    sets = [*TINY_SETS, f"vlp.clip_model={tiny_clip_path}", f"train.device={device}", "train.precision=fp32"]
    cfg = load_config("demo", sets)
    warm = train_warmup(tiny_dataset, out, cfg)
    final = train_alternate(tiny_dataset, out, cfg, warmup_ckpt=warm)
    return evaluate_run(final, tiny_dataset, device=device)


def test_the_pipeline_on_the_gpu_matches_the_cpu(tiny_dataset, tiny_clip_path, tmp_path):
    from wtalkit.models.checkpoint import load_checkpoint

    cpu = _run(tiny_dataset, tiny_clip_path, tmp_path / "cpu", "cpu")
    gpu = _run(tiny_dataset, tiny_clip_path, tmp_path / "gpu", "cuda")
    assert abs(float(gpu.mAP.mean()) - float(cpu.mAP.mean())) < 0.05
    # a checkpoint written on the GPU loads on the CPU
    state = load_checkpoint(tmp_path / "gpu" / "alternate.pt")["models"]["cbp"]
    assert all(t.device.type == "cpu" for t in state.values())


def test_bf16_warmup_on_the_gpu(tiny_dataset, tmp_path):
    from wtalkit.config import load_config
    from wtalkit.train.warmup import train_warmup

    cfg = load_config("demo", [*TINY_SETS, "train.device=cuda", "train.precision=bf16"])
    assert train_warmup(tiny_dataset, tmp_path / "bf16", cfg).exists()

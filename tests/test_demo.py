"""The README's demo command, in its quick form: all five rows and the Table-3 rows come out."""

from click.testing import CliRunner

from wtalkit.cli import cli


def test_demo_quick_prints_tables(tmp_path):
    res = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path / "demo"), "--quick", "--quiet"])
    assert res.exit_code == 0, res.output
    for row in (
        "CBP warm-up only",
        "raw VLP zero-shot",
        "only-F",
        "only-B",
        "alternate (1 rounds)",
        "FG mIoU",
        "alternate: VLP",
        "avg 0.1–0.5",
    ):
        assert row in res.stdout, row
    # a folder that is not a demo folder is never reused
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    res = CliRunner().invoke(cli, ["demo", "-o", str(other), "--quick", "--quiet"])
    assert res.exit_code != 0 and "not a wtalkit demo folder" in res.output
    assert (other / "precious.txt").read_text() == "keep me"


def test_tables_show_mean_and_std_over_seeds():
    """--seeds N: every row of the mAP, rounds and Table-3 tables is mean ± std; one seed prints plain values."""
    from rich.console import Console

    from wtalkit.demo import DemoReport, DemoRow, demo_table, miou_table, rounds_table, selection_line

    tiou = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]

    def report(seed, a):
        class Res:
            pass

        res = Res()
        res.tiou, res.mAP = tiou, [a] * 7
        return DemoReport(
            rows=[DemoRow("CBP warm-up only", tiou, [a] * 7), DemoRow("alternate (3 rounds)", tiou, [a + 0.1] * 7)],
            miou_rows=[("CBP warm-up", {"fg_iou": a, "bg_iou": 0.8, "mean": (a + 0.8) / 2})],
            rounds=[("round_1", res)],
            seed=seed,
            selection={"rule": "agreement", "round": 1, "agreement": {"1": {"score": 0.5}}},
        )

    def text(table):
        console = Console(width=250, record=True)
        console.print(table)
        return console.export_text()

    one = [report(0, 0.30)]
    assert "30.0" in text(demo_table(one)) and "±" not in text(demo_table(one)) + text(miou_table(one))
    many = [report(0, 0.30), report(1, 0.34), report(2, 0.32)]
    for t in (demo_table(many), rounds_table(many), miou_table(many)):
        out = text(t)
        assert "32.0 ± 2.0" in out and "seeds 0, 1, 2" in out
    assert "42.0 ± 2.0" in text(demo_table(many))  # the alternate row
    assert "80.0 ± 0.0" in text(miou_table(many))
    assert "round 1" in selection_line(many) and "training split" in selection_line(many)


def test_table6_rows_on_tiny_data(tiny_dataset, tiny_clip_path, tmp_path):
    """The Table-6 rows: CO2-Net and UM presets for the demo, each warmed up and alternate-trained."""
    from wtalkit.demo import TABLE6, table6_rows

    sets = [
        f"vlp.clip_model={tiny_clip_path}",
        "vlp.temporal_heads=2",
        "data.num_segments=32",
        "train.warmup_epochs=2",
        "train.rounds=1",
        "train.b_epochs=1",
        "train.f_epochs=1",
        "cbp.co2net.rgb_dim=16",  # the tiny dataset's cbp stream is 32-dim (RGB 16 || flow 16)
        "cbp.co2net.attn_dim=8",
        "cbp.co2net.embed_dim=16",
        "cbp.um.hidden_dim=16",
    ]
    rows = table6_rows(tiny_dataset, tmp_path, sets)
    names = [n for n, _ in rows]
    assert names == [f"{label}{suffix}" for _, label in TABLE6 for suffix in (" (warm-up)", " + alternate")]
    for _, res in rows:
        assert len(res.mAP) == 7 and all(0 <= m <= 1 for m in res.mAP)
    for arch, _ in TABLE6:
        assert (tmp_path / f"run_{arch}" / "alternate.pt").exists()


def test_demo_table6_flag_reaches_the_demo(monkeypatch, tmp_path):
    import wtalkit.demo

    seen = {}

    def fake(out_dir, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(wtalkit.demo, "run_demo_seeds", fake)
    CliRunner().invoke(cli, ["demo", "-o", str(tmp_path / "d"), "--table6", "--quiet"])
    assert seen.get("table6") is True

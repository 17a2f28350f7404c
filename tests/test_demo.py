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

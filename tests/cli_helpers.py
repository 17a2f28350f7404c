"""CliRunner helpers shared by the CLI-level tests."""


def run_cli(args):
    from click.testing import CliRunner

    from wtalkit.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(res) -> str:
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output
    err = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(err) == 1, res.output
    return err[0]

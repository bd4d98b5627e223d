"""``petseg demo`` on the command line: flags, and a bad --sam2 path failing in one line."""

from __future__ import annotations

from pathlib import Path

from petseg.cli import build_parser, main


def test_demo_flags_default_to_localhost() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.host == "127.0.0.1" and args.port == 7860 and args.sam2 is None and args.runs is None
    args = build_parser().parse_args(["demo", "--host", "0.0.0.0", "--port", "8000", "--sam2", "x.pt",
                                      "--runs", "r"])
    assert (args.host, args.port, args.sam2, args.runs) == ("0.0.0.0", 8000, "x.pt", Path("r"))


def test_missing_sam2_checkpoint_fails_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--sam2", str(tmp_path / "missing.pt"), "--runs", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("petseg demo: ") and "missing.pt" in error and error.count("\n") == 1


def test_a_file_that_is_not_a_sam2_checkpoint_fails_in_one_line(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a checkpoint")
    assert main(["demo", "--sam2", str(bogus), "--runs", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("petseg demo: ") and "bogus.pt" in error

"""A careless user's mistakes on the command line: each is one line (``petseg: ...``), exit status 1, and
leaves nothing behind (issue 13, one test per row of its table)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from petseg.cli import main
from tests.conftest import write_official

# a tiny UNet on 32 px images, one short epoch: a finished run in seconds
TINY = ["--set", "model.depth=3", "--set", "model.base_width=4", "--set", "model.max_width=8",
        "--set", "data.image_size=32", "--set", "train.batch_size=4", "--set", "train.max_steps_per_epoch=2",
        "--epochs", "1"]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The single stderr line a refused command printed (progress bars aside); nothing on stdout."""
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip() and "%|" not in line]  # no progress bars
    assert captured.out == "", captured.out
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("petseg: ")
    return lines[0]


@pytest.fixture
def env(official_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """PETSEG_DATA = a synthetic dataset; empty cache and runs folders that must stay empty."""
    monkeypatch.setenv("PETSEG_DATA", str(official_dataset))
    monkeypatch.setenv("PETSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PETSEG_PROGRESS", "0")
    monkeypatch.delenv("PETSEG_DEBUG", raising=False)
    return {"data": official_dataset, "cache": tmp_path / "cache", "runs": tmp_path / "runs"}


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


# --------------------------------------------------------------------------------- train: bad settings


@pytest.mark.parametrize(("arguments", "expected"), [
    (["--set", "train.epochs=-1"], "train.epochs must be >= 1, got -1"),
    (["--set", "train.epochs=0"], "train.epochs must be >= 1, got 0"),
    (["--set", "train.batch_size=0"], "train.batch_size must be >= 1, got 0"),
    (["--set", "train.lr=-5"], "train.lr must be > 0, got -5"),
    (["--set", "data.image_size=7"], "data.image_size=7 does not fit model unet"),
    (["--set", "train.nonsense=1"], "unknown setting train.nonsense; valid train keys: amp,"),
    (["--set", "bogus.key=1"], "unknown section 'bogus' for experiment unet; valid sections: data, model, train"),
    (["--set", "train.epochs=abc"], "train.epochs must be an integer, got 'abc'"),
    (["--set", "train.epochs=[1,2"], "--set 'train.epochs=[1,2': the value is not valid YAML"),
    (["--epochs", "0"], "train.epochs must be >= 1, got 0"),
    (["--device", "tpu"], "unknown --device 'tpu'; devices on this machine: auto, cpu"),
    (["--set", "model.nonsense=1"], "unknown setting model.nonsense for model unet; valid model keys:"),
    (["--set", "upstream.train.epochs=2"], "experiment 'unet' is not pre-trained from another run"),
    (["--set", "train=5"], "train must be a mapping of settings"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_bad_train_settings_are_one_line_and_leave_nothing_behind(
        env: dict[str, Path], capsys: pytest.CaptureFixture[str], arguments: list[str], expected: str) -> None:
    assert main(["train", "unet", "--runs-dir", str(env["runs"]), *arguments]) == 1
    assert expected in one_line_error(capsys)
    assert nothing_in(env["runs"]) and nothing_in(env["cache"])  # no run folder, not even a data cache


def test_an_old_experiment_name_names_the_new_one(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15: experiment clip_unet is now fusion_unet (its global vector is not CLIP unless asked for)."""
    assert main(["train", "clip_unet", "--runs-dir", str(env["runs"])]) == 1
    assert one_line_error(capsys) == "petseg: experiment 'clip_unet' is now called 'fusion_unet'"
    assert nothing_in(env["runs"]) and nothing_in(env["cache"])
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    listed = capsys.readouterr().out
    assert "fusion_unet" in listed and "clip_unet" not in listed  # recognised, not offered


def test_image_size_message_names_sizes_that_fit(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "unet", "--set", "data.image_size=100", "--runs-dir", str(env["runs"])]) == 1
    assert "sizes that fit near 100: 96, 128" in one_line_error(capsys)


def test_upstream_settings_are_checked_for_the_upstream_run(env: dict[str, Path],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "ae_unet", "--set", "upstream.train.epochs=0", "--runs-dir", str(env["runs"])]) == 1
    line = one_line_error(capsys)
    assert "train.epochs must be >= 1, got 0" in line and "autoencoder" in line
    assert nothing_in(env["runs"])


def test_record_checks_every_model_before_training_any(env: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "unet", "sam2_effnet", "--set", "model.depth=2", "--profile", "quick",
                 "--runs-dir", str(env["runs"]), "--out", str(env["runs"] / "ref")]) == 1
    assert "unknown setting model.depth for model sam2_effnet" in one_line_error(capsys)
    assert nothing_in(env["runs"])


def test_debug_shows_the_traceback(env: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETSEG_DEBUG", "1")
    assert main(["train", "unet", "--set", "train.epochs=0", "--runs-dir", str(env["runs"])]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1] == "petseg: train.epochs must be >= 1, got 0"


def test_bugs_keep_their_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import petseg.cli as cli

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "_data_check", broken)
    with pytest.raises(KeyError):
        main(["data", "check", str(tmp_path)])


# ------------------------------------------------------------------------------- data check and data


def test_data_check_of_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hostname = tmp_path / "hostname"
    hostname.write_text("box\n")
    assert main(["data", "check", str(hostname)]) == 1
    assert f"{hostname} is a file, not a dataset folder" in one_line_error(capsys)


@pytest.mark.parametrize("as_json", [False, True])
def test_data_check_with_nothing_usable_fails(official_dataset: Path, capsys: pytest.CaptureFixture[str],
                                              as_json: bool) -> None:
    for image in (official_dataset / "images").iterdir():
        image.write_bytes(b"not a jpeg")
    assert main(["data", "check", str(official_dataset), *(["--json"] if as_json else [])]) == 1
    captured = capsys.readouterr()
    if as_json:
        assert json.loads(captured.out)["totals"]["usable_pairs"] == 0  # the report is still printed
    else:
        assert "usable pairs 0" in captured.out
    assert captured.err.strip().splitlines()[-1] == f"petseg: no usable image/mask pairs under {official_dataset}"


def test_data_prepare_refuses_a_bad_image_size(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "prepare", "--image-size", "0"]) == 1
    assert "data.image_size must be >= 1, got 0" in one_line_error(capsys)
    assert nothing_in(env["cache"])


# ------------------------------------------------------------------------------------------ evaluate


def fake_run(folder: Path, checkpoint: bytes | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps({"config": {"task": "segmentation", "profile": "quick"},
                                                        "data": {"root": "/nowhere", "fingerprint": "x"}}))
    path = folder / "best.pt"
    if checkpoint is not None:
        path.write_bytes(checkpoint)
    return path


def truncated_checkpoint() -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    torch.save({"model": {"w": torch.zeros(64, 64)}, "model_config": {"name": "unet"}}, buffer)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


@pytest.mark.parametrize("case", ["missing", "folder", "garbage", "truncated", "bare tensor"])
def test_evaluate_names_what_is_wrong_with_which_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      case: str) -> None:
    run = tmp_path / "run"
    if case == "missing":
        target, expected = tmp_path / "nope.pt", f"no checkpoint at {tmp_path / 'nope.pt'}"
    elif case == "folder":
        fake_run(run, truncated_checkpoint())
        target, expected = run, f"{run} is a folder, not a checkpoint file (the run's checkpoint is {run / 'best.pt'})"
    elif case == "garbage":
        target = fake_run(run, b"this is not a checkpoint")
        expected = f"{target} is damaged or not a petseg checkpoint"
    elif case == "truncated":
        target = fake_run(run, truncated_checkpoint())
        expected = f"{target} is damaged or not a petseg checkpoint"
    else:
        target = fake_run(run)
        torch.save(torch.zeros(3), target)
        expected = f"{target} has no model_config"
    assert main(["evaluate", str(target)]) == 1
    assert expected in one_line_error(capsys)
    assert not list(tmp_path.rglob("eval-*.json"))


# ------------------------------------------------------------------ a finished run: device, damage, data


@pytest.fixture
def finished_run(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> tuple[list[str], Path]:
    """A finished tiny run made through the command line; returns its train arguments and folder."""
    arguments = ["train", "unet", "--runs-dir", str(env["runs"]), *TINY]
    assert main(arguments) == 0
    [run] = env["runs"].iterdir()
    capsys.readouterr()
    return arguments, run


def test_unknown_device_is_refused_for_a_finished_run_too(finished_run: tuple[list[str], Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    arguments, run = finished_run
    assert main([*arguments, "--device", "tpu"]) == 1
    assert "unknown --device 'tpu'; devices on this machine: auto, cpu" in one_line_error(capsys)


def test_resume_with_nothing_to_resume(finished_run: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    arguments, run = finished_run
    assert main([*arguments, "--seed", "1", "--resume"]) == 1  # another seed: no such run
    assert "nothing to resume: no interrupted run at" in one_line_error(capsys)
    assert [p.name for p in run.parent.iterdir()] == [run.name]


def test_damaged_last_checkpoint_says_how_to_go_on(finished_run: tuple[list[str], Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    arguments, run = finished_run
    (run / "results.json").unlink()  # interrupted...
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # ...while last.pt was being copied
    assert main(arguments) == 1
    line = one_line_error(capsys)
    assert f"{last} is damaged or not a petseg checkpoint" in line and "--force" in line
    assert main([*arguments, "--force"]) == 0  # and --force recovers
    assert (run / "results.json").exists()


def test_evaluate_on_other_data_keeps_json_pure_and_the_runs_own_results(
        finished_run: tuple[list[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, run = finished_run
    best = run / "best.pt"
    assert main(["evaluate", str(best), "--json"]) == 0
    own = json.loads(capsys.readouterr().out)
    own_file = run / "eval-test-best.json"
    assert Path(own["written_to"]) == own_file

    write_official(tmp_path / "other" / "pets", per_breed=6)
    monkeypatch.chdir(tmp_path / "other")
    assert main(["evaluate", str(best), "--data", "pets", "--json"]) == 0  # a relative path
    captured = capsys.readouterr()
    other = json.loads(captured.out)  # stdout is JSON alone
    assert "note: data fingerprint" in captured.err
    assert other["data"]["root"] == str(tmp_path / "other" / "pets")  # absolute
    assert Path(other["written_to"]).name == f"eval-test-best-data-{other['data']['fingerprint']}.json"
    assert json.loads(own_file.read_text())["data"]["fingerprint"] == own["data"]["fingerprint"]


# --------------------------------------------------------------------------------- offline, no data


OFFLINE_SCRIPT = textwrap.dedent("""
    import json, socket, sys, time

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "blocked by test")

    socket.getaddrinfo = no_network
    socket.create_connection = no_network
    from petseg.cli import main

    results = {}
    for command in (["data", "prepare"], ["train", "unet"], ["book"]):
        start = time.perf_counter()
        code = main(command)
        results[" ".join(command)] = {"code": code, "seconds": time.perf_counter() - start}
    heavy = sorted(name for name in ("torch", "albumentations", "cv2", "pandas") if name in sys.modules)
    print(json.dumps({"results": results, "heavy": heavy}))
""")


def test_no_data_offline_is_one_line_before_torch_is_imported(tmp_path: Path) -> None:
    """Without PETSEG_DATA, offline: each command says so in one line, having imported none of the heavy
    modules (the 1 s budget itself is measured by benchmarks/cli_offline.py; this bound is generous)."""
    env = {key: value for key, value in os.environ.items()
           if key != "PETSEG_DATA" and "proxy" not in key.lower()}
    env.update(PETSEG_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], capture_output=True, text=True, env=env,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["heavy"] == []
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("petseg: Cannot download") and "PETSEG_DATA" in line
                                   for line in lines), result.stderr
    for command, outcome in report["results"].items():
        assert outcome["code"] == 1, command
        assert outcome["seconds"] < 5, f"{command} took {outcome['seconds']:.1f} s"
    assert not (tmp_path / "cache" / "oxford-iiit-pet").exists()

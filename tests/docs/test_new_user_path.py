"""The new user's path through README and docs, point by point: each fix is checked here or by a
tested snippet (README.md's and docs/'s blocks run in test_snippets.py)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atrous.cli import main
from atrous.engine import load_config
from atrous.engine.config import config_keys
from atrous.models import load_pretrained
from tests.data.helpers import write_folder_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_listed_key_is_accepted_by_set_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--list-keys"]) == 0
    printed = capsys.readouterr().out
    keys = config_keys()
    assert len(printed.strip().splitlines()) == len(keys)
    for key, _, default in keys:
        assert key in printed
        # `--set key=<default>` must load: the list is what --set accepts.
        value = "null" if default is None else yaml.safe_dump(default, default_flow_style=True)
        load_config(None, [f"{key}={value.strip().removesuffix('...').strip()}"])
    assert {"data.root", "data.val_split", "model.pretrained", "optim.lr"} <= {
        k for k, _, _ in keys
    }


def test_the_config_keys_page_is_generated_from_the_same_list() -> None:
    page = (REPO_ROOT / "docs" / "reference" / "config-keys.md").read_text()
    assert "config_keys()" in page  # built by running it, not pasted


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("newuser")
    return write_folder_dataset(base / "data", splits={"train": 4, "val": 1}, size=(16, 16))


def test_data_root_has_one_spelling_and_keeps_the_old_ones(
    dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", "--data.root", str(dataset)]) == 0
    new = capsys.readouterr().out
    assert main(["data", "check", str(dataset)]) == 0  # the positional still works
    assert capsys.readouterr().out == new
    assert main(["data", "check"]) == 2
    assert "--data.root" in capsys.readouterr().err


def test_resume_reuses_the_runs_saved_config(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = [
        "train", "--data.root", str(dataset), "--out", str(out), "--no-progress",
        "--set", "data.crop_size=[16, 16]", "--set", "data.batch_size=2",
        "--set", "schedule.epochs=1", "--set", "train.device=cpu", "--set", "optim.lr=0.003",
    ]  # fmt: skip
    assert main(first) == 0
    # No --config, no --data.root: the run's own config.yaml, with --set on top.
    assert main(["train", "--out", str(out), "--resume", "--no-progress",
                 "--set", "schedule.epochs=2"]) == 0  # fmt: skip
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["root"] == str(dataset)
    assert saved["optim"]["lr"] == 0.003
    assert saved["schedule"]["epochs"] == 2
    epochs = [line for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(epochs) >= 2


def test_readme_states_the_output_stride_cost_in_the_right_order() -> None:
    """MACs of DeepLabV3-ResNet50 at 512x512 for output stride 8, 16, 32, as the README
    quotes them (normalised to OS 32: the cheapest is 1)."""
    from atrous.models.summary import summarize

    macs = {}
    for output_stride in (8, 16, 32):
        row = summarize("deeplabv3", backbone="resnet50", output_stride=output_stride)
        macs[output_stride] = row.macs
    ratio = f"{macs[8] / macs[32]:.1f} : {macs[16] / macs[32]:.1f} : 1"
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"8 vs 16 vs 32 ({ratio} in MACs)" in readme


def test_benchmarks_pytest_commands_collect_tests() -> None:
    text = (REPO_ROOT / "BENCHMARKS.md").read_text()
    commands = re.findall(r"`(pytest [^`]+)`", text)
    assert commands
    for command in commands:
        args = shlex.split(command)[1:]
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"`{command}` collects no test:\n{done.stdout[-500:]}"


def test_training_without_a_val_split_keeps_the_last_model(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "no_val"
    argv = [
        "train", "--data.root", str(dataset), "--out", str(out), "--no-progress",
        "--set", "data.val_split=null", "--set", "data.crop_size=[16, 16]",
        "--set", "data.batch_size=2", "--set", "schedule.epochs=2", "--set", "train.device=cpu",
    ]  # fmt: skip
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and not any(key.startswith("val_") for row in rows for key in row)
    best = load_pretrained(out / "best")
    assert best.metadata["epoch"] == 2 and best.metadata["val_miou"] is None


def test_the_cli_reference_lists_every_flag_of_every_command() -> None:
    """docs/reference/cli.md prints each command's own --help; check it covers them all."""
    import argparse
    import contextlib
    import io
    import re
    from pathlib import Path

    from atrous.cli import build_parser

    page = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "cli.md").read_text()
    block = re.findall(r'```python exec="on" markdown="1"\n(.*?)```\n', page, flags=re.S)[0]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(block, {})
    text = output.getvalue()
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in action.choices.items():
        assert f"## atrous {name}" in text, name
        for flag in (s for a in sub._actions for s in a.option_strings):
            assert flag in text, (name, flag)


def test_the_model_catalogue_lists_every_model_and_shipped_model() -> None:
    import contextlib
    import io
    import re
    from pathlib import Path

    from atrous.models import list_models
    from atrous.models.pretrained import shipped_models

    page = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "catalogue.md").read_text()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        for block in re.findall(r'```python exec="on" markdown="1"\n(.*?)```\n', page, flags=re.S):
            exec(block, {})
    text = output.getvalue()
    for name in [*list_models(), *shipped_models()]:
        assert f"| `{name}` |" in text, name

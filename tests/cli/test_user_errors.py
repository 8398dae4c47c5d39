"""No traceback for a user's mistake: every command answers bad input with one clear
message and a non-zero status, and what was already written stays as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.cli import main
from atrous.models import build_model, save_pretrained
from tests.data.helpers import write_folder_dataset


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("mistakes")
    model = save_pretrained(
        build_model("dilated_net", num_classes=3, width=4, rates=(1, 2)), base / "model"
    )
    data = write_folder_dataset(base / "data", splits={"train": 4, "val": 2}, size=(20, 18))
    image = base / "street.png"
    Image.fromarray(np.zeros((18, 20, 3), dtype=np.uint8)).save(image)
    a_file = base / "a_file.txt"
    a_file.write_text("I am a file, not a folder\n")
    config = base / "bad.yaml"
    config.write_text("optim: {lr: [not, a, number]}\n")
    broken_yaml = base / "broken.yaml"
    broken_yaml.write_text("model: {name: [unclosed\n")
    return {
        "model": model, "data": data, "image": image, "file": a_file, "base": base,
        "config": config, "broken_yaml": broken_yaml,
    }  # fmt: skip


CASES = {
    "predict: missing input": (["predict", "{base}/nope.png", "--model", "{model}", "--out", "{base}/o1"], "nope.png"),
    "predict: unknown model": (["predict", "{image}", "--model", "no_such_model", "--out", "{base}/o2"], "no_such_model"),
    "predict: output is a file": (["predict", "{image}", "--model", "{model}", "--out", "{file}"], "a_file.txt"),
    "eval: missing data root": (["eval", "--model", "{model}", "--data.root", "{base}/nodata"], "nodata"),
    "eval: unknown model": (["eval", "--model", "no_such_model", "--data.root", "{data}"], "no_such_model"),
    "eval: wrong layout": (["eval", "--model", "{model}", "--data.root", "{base}"], "mistakes"),
    "train: missing config": (["train", "--config", "{base}/none.yaml", "--out", "{base}/r1"], "none.yaml"),
    "train: broken YAML": (["train", "--config", "{broken_yaml}", "--out", "{base}/r2"], "broken.yaml"),
    "train: bad value": (["train", "--config", "{config}", "--out", "{base}/r3"], "optim.lr"),
    "train: unknown key": (["train", "--set", "optim.speed=3", "--out", "{base}/r4"], "optim.speed"),
    "train: missing data": (["train", "--data.root", "{base}/nodata", "--out", "{base}/r5"], "nodata"),
    "train: out is a file": (["train", "--data.root", "{data}", "--out", "{file}"], "a_file.txt"),
    "export: unknown model": (["export", "--model", "no_such_model", "--format", "onnx", "--out", "{base}/m.onnx"], "no_such_model"),
    "rf: bad rates": (["rf", "--rates", "1,two"], "1,two"),
    "rf: unknown model": (["rf", "--model", "no_such_model"], "no_such_model"),
    "hdc: bad kernel": (["hdc", "--kernel", "0", "--rates", "1,2"], "kernel"),
    "erf: missing weights": (["erf", "--weights", "{base}/none"], "none"),
    "data check: missing root": (["data", "check", "--data.root", "{base}/nodata"], "nodata"),
    "bench: unknown model": (["bench", "--model", "no_such_model", "--runs", "1"], "no_such_model"),
    "serve: unknown model": (["serve", "--model", "no_such_model", "--port", "58123"], "no_such_model"),
    "adjust-prior: missing model": (["adjust-prior", "--model", "{base}/none", "--data.root", "{data}"], "none"),
    "demo: unwritable out": (["demo", "--out", "{file}/run", "--epochs", "1"], "a_file.txt"),
}  # fmt: skip


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", list(CASES))
def test_a_mistake_gets_one_message_and_no_traceback(
    case: str, place: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    argv, named = CASES[case]
    argv = [arg.format(**place) for arg in argv]
    before = {key: _digest(place[key]) for key in ("model", "data")}
    file_before = place["file"].read_text()
    message = ""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors; SystemExit("message") exits 1
        code, message = exit_.code, ""
        if isinstance(code, str):
            code, message = 1, exit_.code
    captured = capsys.readouterr()
    output = captured.err + captured.out + str(message)
    assert code not in (0, None), output
    assert "Traceback" not in output
    assert named in output, output
    assert {key: _digest(place[key]) for key in ("model", "data")} == before
    assert place["file"].read_text() == file_before


def test_verbose_shows_the_traceback_and_bugs_always_do(
    place: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from atrous.cli import is_user_error

    with pytest.raises(FileNotFoundError):
        main(["-v", "erf", "--weights", str(place["base"] / "none")])
    # A programming error is not the user's: it propagates with its traceback.
    assert not is_user_error(TypeError("unsupported operand"))
    assert is_user_error(OSError(28, "No space left on device"))
    import atrous.cli.rf as rf

    monkeypatch.setattr(rf, "run", lambda args: 1 + "x")
    with pytest.raises(TypeError):
        main(["rf", "--rates", "1,2"])

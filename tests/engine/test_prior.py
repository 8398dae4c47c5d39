"""Post-hoc class-prior adjustment: exact bias folding, the alpha search, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from atrous.cli import main
from atrous.data import FolderDataset
from atrous.engine import evaluate
from atrous.engine.prior import class_weights_from_data, fold_class_bias, search_prior
from atrous.models import build_model, list_models, load_pretrained, save_pretrained
from tests.data.helpers import write_folder_dataset
from tests.models.test_zoo import SMALL_OPTIONS


def _perturb_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics, so eval-mode outputs are not all near zero."""
    generator = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=generator)
            m.running_var.uniform_(0.5, 1.5, generator=generator)
    return model


@pytest.mark.parametrize("name", list_models())
def test_folded_bias_moves_every_logit_by_its_class_shift(name: str) -> None:
    torch.manual_seed(0)
    model = _perturb_norms(build_model(name, num_classes=3, **SMALL_OPTIONS[name])).eval()
    x = torch.randn(2, 3, 45, 61)  # not the size fold_class_bias checks itself on
    with torch.no_grad():
        before = model(x)
    shift = torch.tensor([0.7, -1.3, 0.25])
    fold_class_bias(model, shift)
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after - before, shift[None, :, None, None].expand_as(before),
                               atol=2e-5, rtol=0)  # fmt: skip


def test_fold_refuses_a_head_that_is_not_shift_equivariant() -> None:
    model = build_model("dilated_net", num_classes=3, width=4).eval()
    # A norm after the logits' conv would swallow a bias change: folding must say so.
    model.classifier = nn.Sequential(model.classifier, nn.InstanceNorm2d(3))
    conv = [m for m in model.classifier.modules() if isinstance(m, nn.Conv2d)][-1]
    saved = conv.bias.detach().clone()
    with pytest.raises(ValueError, match="did not move"):
        fold_class_bias(model, [1.0, 0.0, -1.0])
    torch.testing.assert_close(conv.bias.detach(), saved)
    with pytest.raises(ValueError, match="2 values"):
        fold_class_bias(model, [1.0, 0.0])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("prior")
    return write_folder_dataset(base / "data", splits={"train": 6, "val": 3}, size=(32, 24))


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = _perturb_norms(build_model("dilated_net", num_classes=3, width=4)).eval()
    model.class_names = ["class0", "class1", "class2"]
    model.palette = [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    return model


def test_search_scores_agree_with_evaluating_the_folded_model(root: Path) -> None:
    """Each alpha's mIoU from the shared-logits search equals a full evaluation of the
    model with that alpha folded in (two independent code paths)."""
    dataset = FolderDataset(root, split="train")
    weights = [0.5, 1.0, 3.0]
    search = search_prior(_model(), dataset, weights, alphas=(-1.0, 0.0, 1.0))
    assert search.best == search.alphas[int(np.argmax(search.miou))]
    for alpha, miou in zip(search.alphas, search.miou):
        model = fold_class_bias(_model(), [-alpha * math.log(w) for w in weights])
        result = evaluate(model, dataset, num_classes=3)
        assert result["miou"] == pytest.approx(miou, abs=1e-12)
    assert len(set(search.miou)) > 1  # the alphas changed the predictions


def test_search_rejects_zero_weights(root: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        search_prior(_model(), FolderDataset(root, split="train"), [1.0, 0.0, 2.0])


def test_weights_from_data(root: Path) -> None:
    full = class_weights_from_data("median_frequency", "folder", str(root))
    soft = class_weights_from_data("sqrt_median_frequency", "folder", str(root))
    np.testing.assert_allclose(soft, np.sqrt(full))
    assert np.median(full) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="expected one of"):
        class_weights_from_data("inverse", "folder", str(root))


def test_cli_saves_a_model_that_reproduces_the_chosen_alpha(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_pretrained(_model(), tmp_path / "model", metadata={"dataset": "folder"})
    args = ["adjust-prior", "--model", str(tmp_path / "model"), "--data.root", str(root)]
    args += ["--weights", "0.5,1,3", "--alphas", "-1", "0", "1", "--device", "cpu"]
    code = main([*args, "--out", str(tmp_path / "adjusted"), "--json", str(tmp_path / "s.json")])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "| alpha | mIoU" in out and "saved the adjusted model" in out
    record = json.loads((tmp_path / "s.json").read_text())
    adjusted = load_pretrained(tmp_path / "adjusted")
    meta = json.loads((tmp_path / "adjusted" / "config.json").read_text())["metadata"]
    assert meta["dataset"] == "folder"  # the original metadata is kept
    assert meta["prior_adjustment"]["alpha"] == record["alpha"] == record["best_alpha"]
    # The saved model scores, on the same split, what the search said it would.
    result = evaluate(adjusted, FolderDataset(root, split="train"), num_classes=3)
    assert result["miou"] == pytest.approx(max(record["miou"]), abs=1e-9)


def test_cli_errors_name_the_problem(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_pretrained(_model(), tmp_path / "model")
    base = ["adjust-prior", "--model", str(tmp_path / "model"), "--data.root", str(root)]
    assert main([*base, "--weights", "1,two,3"]) == 2
    assert "comma-separated numbers" in capsys.readouterr().err
    assert main([*base, "--weights", "1,2"]) == 2
    assert "expected 3 positive values" in capsys.readouterr().err
    assert main(["adjust-prior", "--model", str(tmp_path / "none"), "--data.root", str(root)]) == 2
    assert "no saved model" in capsys.readouterr().err

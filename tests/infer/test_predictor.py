from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import functional as TF

from atrous.constants import IMAGENET_MEAN, IMAGENET_STD
from atrous.infer import Predictor
from atrous.infer.predictor import window_starts

from .conftest import PointwiseNet, TinyASPPNet


def _reference_proba(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Whole-image probabilities computed with torchvision's own transforms."""
    x = TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD).unsqueeze(0)
    with torch.no_grad():
        return model(x).softmax(1)[0].numpy()


def test_whole_matches_reference(tiny_model: TinyASPPNet, rgb_image: np.ndarray) -> None:
    predictor = Predictor(tiny_model)
    proba = predictor.predict_proba(rgb_image)
    assert proba.shape == (5, *rgb_image.shape[:2]) and proba.dtype == np.float32
    np.testing.assert_allclose(proba, _reference_proba(tiny_model, rgb_image), atol=1e-6)
    labels = predictor.predict(rgb_image)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, proba.argmax(0))


def test_torchvision_dict_output(rgb_image: np.ndarray) -> None:
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    assert Predictor(model).predict(rgb_image).shape == rgb_image.shape[:2]


def test_window_starts_cover_and_stay_inside() -> None:
    assert window_starts(10, 16, 8) == [0]
    assert window_starts(100, 32, 22) == [0, 22, 44, 66, 68]
    for length, window, stride in [(100, 32, 22), (64, 32, 32), (65, 32, 11)]:
        starts = window_starts(length, window, stride)
        covered = np.zeros(length, bool)
        for s in starts:
            assert s >= 0 and s + window <= length
            covered[s : s + window] = True
        assert covered.all()


def test_slide_equals_whole_for_pointwise_model(rgb_image: np.ndarray) -> None:
    # Output at a pixel depends only on that pixel: stitching/averaging must be exact.
    model = PointwiseNet().eval()
    whole = Predictor(model).predict_proba(rgb_image)
    slide = Predictor(model, mode="slide", window=16, overlap=0.5, batch_size=3)
    np.testing.assert_allclose(slide.predict_proba(rgb_image), whole, atol=1e-6)


def test_slide_single_window_equals_whole(tiny_model: TinyASPPNet, rgb_image: np.ndarray) -> None:
    # One window covering the image exactly is whole-image inference.
    height, width = rgb_image.shape[:2]
    square = rgb_image[:height, :height]
    whole = Predictor(tiny_model).predict_proba(square)
    slide = Predictor(tiny_model, mode="slide", window=height).predict_proba(square)
    np.testing.assert_allclose(slide, whole, atol=1e-6)
    assert width > height


def test_slide_close_to_whole_for_local_model(rgb_image: np.ndarray) -> None:
    # A model with a small receptive field and no global pooling: windows disagree with
    # the whole image only near window borders (zero padding), so labels mostly agree.
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3, padding=1)
    ).eval()
    whole = Predictor(model).predict(rgb_image)
    slide = Predictor(model, mode="slide", window=24, overlap=0.5).predict(rgb_image)
    assert (whole == slide).mean() > 0.9


def test_flip_tta_is_flip_equivariant(tiny_model: TinyASPPNet, rgb_image: np.ndarray) -> None:
    # Averaging a prediction with its mirrored twin gives a mirror-consistent result for
    # any model: predicting the mirrored image gives the mirrored probabilities.
    predictor = Predictor(tiny_model, flip=True, scales=(0.75, 1.0))
    direct = predictor.predict_proba(rgb_image)
    mirrored = predictor.predict_proba(np.ascontiguousarray(rgb_image[:, ::-1]))
    np.testing.assert_allclose(mirrored[:, :, ::-1], direct, atol=1e-5)
    # And it is a real average: it differs from the plain prediction for this model.
    plain = Predictor(tiny_model).predict_proba(rgb_image)
    assert np.abs(plain - direct).max() > 1e-4


def test_flip_tta_is_identity_for_equivariant_model(rgb_image: np.ndarray) -> None:
    model = PointwiseNet().eval()
    np.testing.assert_allclose(
        Predictor(model, flip=True).predict_proba(rgb_image),
        Predictor(model).predict_proba(rgb_image),
        atol=1e-6,
    )


def test_batch_matches_single(tiny_model: TinyASPPNet, rgb_image: np.ndarray) -> None:
    other = np.ascontiguousarray(rgb_image[::-1])
    small = rgb_image[:20, :30]
    predictor = Predictor(tiny_model, batch_size=2)
    batch = predictor.predict_batch([rgb_image, small, other])
    for image, labels in zip([rgb_image, small, other], batch):
        np.testing.assert_array_equal(labels, Predictor(tiny_model).predict(image))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"mode": "tiles"}, "mode"), ({"overlap": 1.0}, "overlap"), ({"scales": (0,)}, "scales")],
)
def test_bad_arguments(tiny_model: TinyASPPNet, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Predictor(tiny_model, **kwargs)


def test_rejects_non_uint8(tiny_model: TinyASPPNet) -> None:
    with pytest.raises(ValueError, match="uint8"):
        Predictor(tiny_model).predict(np.zeros((8, 8, 3), np.float32))

"""The reference dilated convolution against torch's own convolution (someone else's code)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from atrous.ops import dilated_conv1d, dilated_conv2d, dilated_conv3d


@st.composite
def conv1d_case(draw: st.DrawFn) -> dict:
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    k = draw(st.integers(1, 5))
    r = draw(st.integers(1, 5))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, 6))
    span = k + (k - 1) * (r - 1)
    length = draw(st.integers(max(1, span - 2 * p), span + 20))
    return dict(
        n=draw(st.integers(1, 3)),
        c_in=c_in,
        c_out=c_out,
        k=k,
        r=r,
        s=s,
        p=p,
        groups=groups,
        length=length,
        bias=draw(st.booleans()),
    )


@st.composite
def conv2d_case(draw: st.DrawFn) -> dict:
    groups = draw(st.integers(1, 2))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rh, rw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    span_h, span_w = kh + (kh - 1) * (rh - 1), kw + (kw - 1) * (rw - 1)
    h = draw(st.integers(max(1, span_h - 2 * ph), span_h + 10))
    w = draw(st.integers(max(1, span_w - 2 * pw), span_w + 10))
    return dict(
        n=draw(st.integers(1, 2)),
        c_in=c_in,
        c_out=c_out,
        k=(kh, kw),
        r=(rh, rw),
        s=(sh, sw),
        p=(ph, pw),
        groups=groups,
        size=(h, w),
        bias=draw(st.booleans()),
    )


@settings(max_examples=150, deadline=None)
@given(conv1d_case())
def test_conv1d_matches_torch(case: dict) -> None:
    x = torch.randn(case["n"], case["c_in"], case["length"], dtype=torch.float64)
    w = torch.randn(case["c_out"], case["c_in"] // case["groups"], case["k"], dtype=torch.float64)
    b = torch.randn(case["c_out"], dtype=torch.float64) if case["bias"] else None
    kwargs = dict(stride=case["s"], padding=case["p"], dilation=case["r"], groups=case["groups"])
    expected = F.conv1d(x, w, b, **kwargs)
    actual = dilated_conv1d(x, w, b, **kwargs)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(conv2d_case())
def test_conv2d_matches_torch(case: dict) -> None:
    x = torch.randn(case["n"], case["c_in"], *case["size"], dtype=torch.float64)
    w = torch.randn(case["c_out"], case["c_in"] // case["groups"], *case["k"], dtype=torch.float64)
    b = torch.randn(case["c_out"], dtype=torch.float64) if case["bias"] else None
    kwargs = dict(stride=case["s"], padding=case["p"], dilation=case["r"], groups=case["groups"])
    expected = F.conv2d(x, w, b, **kwargs)
    actual = dilated_conv2d(x, w, b, **kwargs)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_conv3d_matches_torch() -> None:
    x = torch.randn(2, 4, 9, 10, 11, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 2, 3, dtype=torch.float64)
    kwargs = dict(stride=(1, 2, 1), padding=(2, 1, 0), dilation=(2, 3, 1), groups=2)
    torch.testing.assert_close(dilated_conv3d(x, w, None, **kwargs), F.conv3d(x, w, None, **kwargs))


def test_gradcheck_1d_and_2d() -> None:
    x = torch.randn(2, 4, 11, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: dilated_conv1d(x, w, b, stride=2, padding=3, dilation=2, groups=2),
        (x, w, b),
    )
    x2 = torch.randn(1, 2, 7, 8, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w: dilated_conv2d(x, w, None, stride=1, padding=(2, 1), dilation=(2, 3)), (x2, w2)
    )


def test_rate2_three_taps_touch_offsets_0_2_4() -> None:
    # Which inputs does output 0 read? Put an impulse at every input in turn.
    w = torch.ones(1, 1, 3, dtype=torch.float64)
    touched = []
    for i in range(9):
        x = torch.zeros(1, 1, 9, dtype=torch.float64)
        x[0, 0, i] = 1.0
        if dilated_conv1d(x, w, dilation=2)[0, 0, 0] != 0:
            touched.append(i)
    assert touched == [0, 2, 4]
    # The same through the gradient: d y[0] / d x is non-zero exactly at 0, 2, 4.
    x = torch.zeros(1, 1, 9, dtype=torch.float64, requires_grad=True)
    dilated_conv1d(x, w, dilation=2)[0, 0, 0].backward()
    assert torch.nonzero(x.grad[0, 0]).flatten().tolist() == [0, 2, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dilation=0), "dilation"),
        (dict(stride=0), "stride"),
        (dict(padding=-1), "padding"),
        (dict(dilation=5), "does not fit"),
        (dict(groups=3), "groups"),
    ],
)
def test_clear_errors(kwargs: dict, message: str) -> None:
    x = torch.randn(1, 4, 8)
    w = torch.randn(2, 4, 3)
    with pytest.raises(ValueError, match=message):
        dilated_conv1d(x, w, **kwargs)


def test_channel_mismatch_names_counts() -> None:
    with pytest.raises(ValueError, match="input has 3"):
        dilated_conv2d(torch.randn(1, 3, 8, 8), torch.randn(2, 4, 3, 3))

"""Size arithmetic of dilated convolutions, shared by the ops, models and analysis."""

from __future__ import annotations


def _check_positive(value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def effective_kernel_size(kernel_size: int, rate: int) -> int:
    """Span of input samples one dilated kernel reads: ``k + (k - 1)(r - 1)``.

    A 3-tap kernel at rate 2 reads inputs at offsets 0, 2, 4, so it spans 5 samples
    while holding only 3 weights.
    """
    _check_positive(kernel_size, "kernel_size")
    _check_positive(rate, "rate")
    return kernel_size + (kernel_size - 1) * (rate - 1)


def same_padding(kernel_size: int, rate: int = 1) -> int:
    """Zero padding on each side that keeps the size at stride 1: ``r (k - 1) / 2``.

    Raises:
        ValueError: for an even kernel, whose span cannot be centred on the output.
    """
    span = effective_kernel_size(kernel_size, rate)
    if kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size={kernel_size} is even: 'same' padding needs an odd kernel so the "
            f"span ({span} inputs at rate {rate}) can be centred; use an odd kernel_size or "
            "pad explicitly"
        )
    return (span - 1) // 2


def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, rate: int = 1
) -> int:
    """Output length of a convolution: ``floor((n + 2p - span) / s) + 1``.

    Raises:
        ValueError: when the dilated kernel does not fit in the padded input.
    """
    _check_positive(stride, "stride")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    span = effective_kernel_size(kernel_size, rate)
    padded = size + 2 * padding
    if span > padded:
        raise ValueError(
            f"kernel does not fit: kernel_size={kernel_size} at rate={rate} spans {span} "
            f"inputs but the padded input has only {padded} (size {size} + 2*padding {padding})"
        )
    return (padded - span) // stride + 1

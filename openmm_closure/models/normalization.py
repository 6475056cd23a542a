"""Stored min-max scalers.

Every statistic the models need at inference time (coordinate ranges, ranges of the
macroscopic and closure variables) lives in a :class:`MinMaxScaler` as registered
buffers, so it is saved in the state dict, moves with ``.to(device)`` and is part of a
TorchScript export.
"""


import torch
from torch import Tensor, nn

__all__ = ["MinMaxScaler"]


class MinMaxScaler(nn.Module):
    r"""Affine map of each feature from ``[lo, hi]`` onto ``[-1, 1]``.

    .. math:: y = 2 (x - lo) / (hi - lo) - 1

    A feature whose range is empty (``hi == lo``) is mapped with a unit span, so it
    stays finite.

    Arguments:
        features: number of features D.

    Example:
        >>> s = MinMaxScaler(2)
        >>> s.fit(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
        >>> s(torch.tensor([1.0, 3.0]))
        tensor([0., 1.])
    """

    lo: Tensor
    hi: Tensor

    def __init__(self, features: int):
        super().__init__()
        if features < 0:
            raise ValueError(f"features must be >= 0, got {features}")
        self.features = int(features)
        self.register_buffer("lo", -torch.ones(features, dtype=torch.float64))
        self.register_buffer("hi", torch.ones(features, dtype=torch.float64))

    @torch.jit.unused
    def fit(self, data) -> None:
        """Set the ranges from data.

        Arguments:
            data: array or tensor of shape (..., D), any float dtype (raw units).
        """
        x = torch.as_tensor(data, dtype=torch.float64).reshape(-1, self.features)
        if x.shape[0] == 0:
            raise ValueError("cannot fit a scaler on an empty array")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("cannot fit a scaler on data containing NaN or inf")
        self.lo.copy_(x.min(dim=0).values)
        self.hi.copy_(x.max(dim=0).values)

    def _span(self) -> Tensor:
        span = self.hi - self.lo
        return torch.where(span > 0, span, torch.ones_like(span))

    def forward(self, x: Tensor) -> Tensor:
        """Scale ``x`` of shape (..., D) (raw units) to [-1, 1]; dtype of ``x`` kept."""
        lo = self.lo.to(dtype=x.dtype, device=x.device)
        span = self._span().to(dtype=x.dtype, device=x.device)
        return 2.0 * (x - lo) / span - 1.0

    def inverse(self, y: Tensor) -> Tensor:
        """Map scaled ``y`` of shape (..., D) back to raw units."""
        lo = self.lo.to(dtype=y.dtype, device=y.device)
        span = self._span().to(dtype=y.dtype, device=y.device)
        return (y + 1.0) * 0.5 * span + lo

    def rate(self, dy: Tensor) -> Tensor:
        """Map a scaled increment or rate (..., D) to raw units (no offset)."""
        return dy * 0.5 * self._span().to(dtype=dy.dtype, device=dy.device)

    def extra_repr(self) -> str:
        return f"features={self.features}"

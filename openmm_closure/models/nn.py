"""Building blocks shared by the networks: the MLP, the set-encoder base and the
:class:`Dynamics` protocol every dynamics kind satisfies.

:class:`SetEncoder` holds what every permutation-invariant (or, for AE-Aug, ordered)
set encoder shares: argument checks, the per-set centring and min-max map of the
coordinates (:meth:`SetEncoder.normalize`), dtype/device handling and the one-set
``forward`` that TorchScript exports. Subclasses implement ``forward_flat``.
"""

from typing import Optional, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor, nn

from .normalization import MinMaxScaler

__all__ = ["MLP", "SetEncoder", "Dynamics", "DYNAMICS_MEMBERS", "center_sets"]


@runtime_checkable
class Dynamics(Protocol):
    """What the model, the rollout engine, the exports and the trainer use of a dynamics
    (an ``nn.Module`` that ``torch.jit.script`` compiles, on scaled states z (..., D)).

    Attributes:
        dim: state dimension D.
        dt: default time step, ps (the training step).
        stochastic: True for an SDE (its rollouts take standard normal noise).

    Example:
        >>> from openmm_closure.models.dynamics import ODEDynamics
        >>> isinstance(ODEDynamics(2), Dynamics)
        True
    """

    dim: int
    dt: float
    stochastic: bool

    def drift(self, z: Tensor) -> Tensor:
        """g(z) (..., D) per ps."""
        ...

    def diffusion(self, z: Tensor) -> Tensor:
        """Diagonal σ(z) (..., D) per sqrt(ps); zeros for an ODE."""
        ...

    def step(self, z: Tensor, dt: float, noise: Tensor) -> Tensor:
        """One step of dt ps; ``noise`` (..., D) N(0, 1) (an ODE gets an empty tensor)."""
        ...

    def loss(self, z0: Tensor, z1: Tensor, dt: float) -> Tensor:
        """The one-step training loss of pairs z0 -> z1 (B, D), a () tensor."""
        ...

    def rollout(self, z0: Tensor, steps: int, dt: float, noise: Optional[Tensor] = None) -> Tensor:
        """(K, D) -> (K, steps + 1, D); ``noise`` (steps, K, D) for an SDE."""
        ...


#: the members a :class:`Dynamics` has (checked when a dynamics kind is registered)
DYNAMICS_MEMBERS = ("dim", "dt", "stochastic", "drift", "diffusion", "step", "loss", "rollout")


class MLP(nn.Sequential):
    """Multi-layer perceptron ``Linear -> act -> ... -> Linear``.

    Arguments:
        in_features: input size.
        out_features: output size.
        hidden: sizes of the hidden layers.
        activation: activation class, instantiated between layers.

    Example:
        >>> MLP(2, 3, (16, 16))(torch.randn(5, 2)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        activation: type = nn.SiLU,
    ):
        layers: list[nn.Module] = []
        sizes = [int(in_features), *[int(h) for h in hidden], int(out_features)]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i > 0:
                layers.append(activation())
            layers.append(nn.Linear(a, b))
        super().__init__(*layers)


def center_sets(x: Tensor, index: Tensor, n_sets: int) -> Tensor:
    """Subtract each set's centroid: x (N, D) any units, index (N,) set of each element.

    Returns:
        (N, D) coordinates relative to the mean of their set (same units and dtype).
    """
    sums = torch.zeros(n_sets, x.shape[1], dtype=x.dtype, device=x.device).index_add(0, index, x)
    ones = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
    counts = torch.zeros(n_sets, dtype=x.dtype, device=x.device).index_add(0, index, ones)
    return x - (sums / counts.clamp(min=1.0).unsqueeze(-1))[index]


def _check_args(latent_dim: int, in_features: int, n_species: int, minimum: int = 1) -> None:
    if int(latent_dim) < minimum:
        raise ValueError(f"latent dimension must be >= 1, got {latent_dim}")
    if int(in_features) <= 0 or int(in_features) > 3:
        raise ValueError(f"in_features must be 1, 2 or 3, got {in_features}")
    if int(n_species) <= 0:
        raise ValueError(f"n_species must be >= 1, got {n_species}")


class SetEncoder(nn.Module):
    """Base of every set encoder: input handling shared by them (normalisation, checks, dtype).

    A subclass implements :meth:`forward_flat`; :meth:`forward` (one set, the TorchScript
    entry point) and :meth:`normalize` come from here. See
    :mod:`openmm_closure.models.encoder` for the interface.

    Arguments:
        latent_dim: closure dimension d.
        in_features: coordinates used per particle (1, 2 or 3).
        n_species: number of species S.
        center: subtract each set's centroid before normalising (translation invariance).
    """

    _probe: Tensor

    def __init__(self, latent_dim: int, in_features: int, n_species: int, center: bool = False,
                 _minimum_latent: int = 1):
        super().__init__()
        _check_args(latent_dim, in_features, n_species, _minimum_latent)
        self.latent_dim = int(latent_dim)
        self.in_features = int(in_features)
        self.n_species = int(n_species)
        #: subtract each set's centroid before normalising (translation invariance)
        self.center = bool(center)
        #: coordinate ranges (nm) mapped to [-1, 1]; set by :meth:`fit_normalization`
        self.coords = MinMaxScaler(self.in_features)
        # empty buffer that follows .to(dtype/device): tells forward what to convert to
        self.register_buffer("_probe", torch.zeros(0), persistent=False)

    @torch.jit.unused
    def fit_normalization(self, positions) -> None:
        """Set the coordinate ranges from training sets (S, n, >= in_features) in nm
        (each set centred first when ``center``)."""
        x = torch.as_tensor(positions, dtype=torch.float64)[..., : self.in_features]
        if self.center:
            x = x - x.mean(dim=-2, keepdim=True)
        self.coords.fit(x)

    def normalize(self, positions: Tensor, index: Optional[Tensor] = None, n_sets: int = 1) -> Tensor:
        """Positions (N, >= in_features) in nm -> normalised (N, in_features).

        Arguments:
            positions: (N, >= in_features) nm, a flat concatenation of ``n_sets`` sets.
            index: (N,) int64 set of each element (None: one set). Used only when
                ``center``: each set's centroid is subtracted before the min-max map.
            n_sets: number of sets.

        Returns:
            (N, in_features) normalised coordinates in the encoder's dtype.
        """
        x = positions[..., : self.in_features].to(device=self._probe.device)
        if self.center and x.shape[0] > 0:  # in the input's precision, then the encoder's
            if index is None:
                x = x - x.mean(dim=0, keepdim=True)
            else:
                x = center_sets(x, index.to(device=x.device, dtype=torch.long), n_sets)
        return self.coords(x.to(dtype=self._probe.dtype))

    def forward_flat(self, x: Tensor, types: Tensor, index: Tensor, n_sets: int) -> Tensor:
        raise NotImplementedError

    def forward(self, positions: Tensor, types: Tensor) -> Tensor:
        """Encode one set.

        Arguments:
            positions: (n, 3) positions in nm, any float dtype (extra columns ignored).
            types: (n,) int species indices in ``[0, n_species)``.

        Returns:
            (d,) closure variables (dimensionless), in the encoder's dtype.
        """
        if positions.dim() != 2 or positions.shape[1] < self.in_features:
            raise ValueError(
                "positions must have shape (n, " + str(self.in_features) + ") or (n, 3)"
            )
        if types.dim() != 1 or types.shape[0] != positions.shape[0]:
            raise ValueError("types must have shape (n,) matching positions")
        if positions.shape[0] == 0:
            raise ValueError("an empty set (0 particles) has no closure variables: pass at least one particle")
        if not positions.is_floating_point():  # whole-number coordinates in nm, as model.encode takes them
            positions = positions.to(torch.float64)
        types = types.to(device=self._probe.device, dtype=torch.long)
        if types.numel() > 0:
            if bool(types.min() < 0) or bool(types.max() >= self.n_species):
                raise ValueError(
                    "species index out of range: this encoder knows "
                    + str(self.n_species)
                    + " species (types 0.."
                    + str(self.n_species - 1)
                    + "), got types in ["
                    + str(int(types.min()))
                    + ", "
                    + str(int(types.max()))
                    + "]"
                )
        x = self.normalize(positions)  # one set: centred over all its particles when ``center``
        index = torch.zeros_like(types)
        return self.forward_flat(x, types, index, 1)[0]

r"""The surrogate integrator: encode one configuration, extrapolate the macroscopic state.

MD gives a configuration X (positions in nm, species); the model encodes it once into
the scaled state z0 = scale([z̄(X), ẑ(X)]) and the learned ODE/SDE extrapolates z alone,
as an ensemble of ``samples`` members (all equal for an ODE). The result is the
macroscopic trajectory in raw units: time (ps), mean and standard deviation over the
ensemble of every observable of z̄ and every closure variable ẑ_i.

Python::

    model = openmm_closure.load_model("models/p2d")
    result = SurrogateIntegrator(model).run(positions, types, steps=1000, samples=32, seed=0)
    result.mean[:, 0]                   # (steps + 1,) mean of the first observable
    result.save("rollout.csv")

    result = from_simulation(simulation, model, steps=1000)   # an openmm.app.Simulation

Command line::

    openmm-closure rollout --model models/p2d --data data/p2d-test --replica 0 --frame 0 \
        --steps 1000 --samples 32 --seed 0 --out rollout.csv
    openmm-closure rollout --model models/p2d --positions frame.npy --steps 1000 --out rollout.npz

Output files: CSV with columns ``time_ps``, then ``<name>_mean``, ``<name>_std`` for every
state component (observables first, then ``zhat_0``, ``zhat_1``, ...); or NPZ with
``time_ps`` (T,), ``names`` (D,), ``mean`` / ``std`` (T, D), ``samples`` (K, T, D) and
``initial`` (D,), all raw units, and ``ood_step`` (the first step out of the training
range of z, -1 if none; see :mod:`openmm_closure.couple.guard`). T = steps + 1 (the initial state included); the
standard deviation is over the K members (ddof 0).

This module imports openmm only inside :func:`from_simulation`.
"""

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..species import check_species, state_names

__all__ = [
    "SurrogateResult",
    "SurrogateIntegrator",
    "from_simulation",
    "types_from_names",
    "check_species_names",
    "output_kind",
]


@dataclass
class SurrogateResult:
    """A macroscopic ensemble trajectory in raw units.

    Attributes:
        times: (T,) time in ps, starting at 0.
        names: the D state component names (observables, then ``zhat_i``).
        samples: (K, T, D) every member, raw units (observables' units; ẑ dimensionless).
        macro_dim: number of observables (the first components).
        stochastic: whether the dynamics is an SDE.
        ood_step: first step index at which a member left the training range of z (with
            the model's margin, see :mod:`openmm_closure.couple.guard`), or None.
        ood_time: the same in ps (``times[ood_step]``), or None.
        ood_component: name of the component that left first, or None.
    """

    times: np.ndarray
    names: list
    samples: np.ndarray
    macro_dim: int
    stochastic: bool
    ood_step: Optional[int] = None
    ood_time: Optional[float] = None
    ood_component: Optional[str] = None

    @property
    def mean(self) -> np.ndarray:
        """(T, D) ensemble mean."""
        return self.samples.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """(T, D) ensemble standard deviation (ddof 0; zeros for one member)."""
        return self.samples.std(axis=0)

    @property
    def initial(self) -> np.ndarray:
        """(D,) the encoded initial state [z̄, ẑ]."""
        return self.samples[0, 0]

    @property
    def diverged(self) -> bool:
        """True when a member left the finite numbers (NaN or inf)."""
        return not bool(np.isfinite(self.samples).all())

    def save(self, path, overwrite: bool = False) -> Path:
        """Write ``.csv`` (time, mean and std per component) or ``.npz`` (everything), atomically.

        An existing ``path`` is replaced only with ``overwrite=True`` (else FileExistsError).
        """
        from ..fileio import atomic_write_bytes

        path = Path(path)
        kind = output_kind(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "csv":
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["time_ps"] + [f"{n}_{s}" for n in self.names for s in ("mean", "std")])
            mean, std = self.mean, self.std
            for t in range(len(self.times)):
                row = [repr(float(self.times[t]))]
                for j in range(len(self.names)):
                    row += [repr(float(mean[t, j])), repr(float(std[t, j]))]
                w.writerow(row)
            atomic_write_bytes(path, buf.getvalue().encode())
        else:
            buf = io.BytesIO()
            np.savez(buf, time_ps=self.times, names=np.asarray(self.names), mean=self.mean,
                     std=self.std, samples=self.samples, initial=self.initial,
                     ood_step=np.int64(-1 if self.ood_step is None else self.ood_step))
            atomic_write_bytes(path, buf.getvalue())
        return path

    def summary(self) -> str:
        """A few lines: each component's mean ± std at the start and at the end."""
        t_end = float(self.times[-1])
        width = max(len(n) for n in self.names)
        lines = [f"{'component':<{width}}  {'t = 0 ps':>22}  {f't = {t_end:g} ps':>22}"]
        mean, std = self.mean, self.std
        for j, n in enumerate(self.names):
            a = f"{mean[0, j]:.5g} ± {std[0, j]:.2g}"
            b = f"{mean[-1, j]:.5g} ± {std[-1, j]:.2g}"
            lines.append(f"{n:<{width}}  {a:>22}  {b:>22}")
        if self.diverged:
            bad = np.where(~np.isfinite(self.samples).all(axis=(0, 2)))[0]
            lines.append(f"warning: the rollout diverged (NaN/inf from t = {self.times[bad[0]]:g} ps)")
        if self.ood_time is not None:
            lines.append(f"warning: left the training range of z at t = {self.ood_time:g} ps ({self.ood_component})")
        return "\n".join(lines)


def output_kind(path: str | os.PathLike) -> str:
    """``"csv"`` or ``"npz"``: the format of a rollout output file, from its suffix.

    Raises:
        ValueError: any other suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".npz"):
        raise ValueError(f"output file must end in .csv or .npz, got {Path(path).name!r}")
    return suffix[1:]


class SurrogateIntegrator:
    """Extrapolate the macroscopic state of a configuration with a trained model.

    Arguments:
        model: a :class:`openmm_closure.learn.model.ClosureModel` or a model directory.
        dt: time step in ps (default: the model's training frame spacing).
        device: torch device when ``model`` is a directory.

    Example:
        >>> integ = SurrogateIntegrator("models/p2d")                  # doctest: +SKIP
        >>> res = integ.run(positions, types, steps=300, samples=8)    # doctest: +SKIP
        >>> res.mean.shape                                             # doctest: +SKIP
        (301, 3)
    """

    def __init__(self, model: Any, dt: Optional[float] = None, device: str = "cpu"):
        if isinstance(model, (str, Path)):
            from ..learn.model import load_model

            if not Path(model).is_dir():
                raise FileNotFoundError(f"model directory {model} does not exist")
            model = load_model(model, device=device)
        self.model = model
        self.dt = float(model.dt if dt is None else dt)
        if not np.isfinite(self.dt) or self.dt <= 0:
            raise ValueError(f"dt must be > 0 ps, got {dt}")

    @property
    def names(self) -> list:
        """Names of the state components ``[z̄, ẑ]``."""
        return state_names(self.model.observables, self.model.latent_dim)

    def check(self, positions: Any, types: Any) -> tuple:
        """Validate one configuration; returns (positions (n, 3) float64 nm, types (n,) int64)."""
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] == 0:
            raise ValueError(f"positions must have shape (n, 3) in nm, got {pos.shape}")
        if not np.isfinite(pos).all():
            raise ValueError("positions contain NaN or inf")
        typ = np.asarray(types)
        if typ.ndim != 1 or typ.shape[0] != pos.shape[0]:
            raise ValueError(f"types of shape {typ.shape} do not match {pos.shape[0]} particles")
        if typ.size and not np.issubdtype(typ.dtype, np.integer):
            raise ValueError(f"types must be integer species indices, got {typ.dtype}")
        typ = check_species(typ, self.model.n_species, self.model.spec.species, self.model.spec.system)
        return pos, typ.astype(np.int64)

    def initial_state(self, positions: Any, types: Any):
        """Scaled state z0 (D,) of one configuration: positions (n, 3) nm, types (n,)."""
        pos, typ = self.check(positions, types)
        return self.model.state(pos, typ)

    def run(self, positions: Any, types: Any, steps: int, samples: int = 1,
            seed: Optional[int] = None, allow_large: bool = False) -> SurrogateResult:
        """Encode one configuration and extrapolate it.

        Arguments:
            positions: (n, 3) positions in nm (numpy, torch or a list), any float dtype.
            types: (n,) species indices in ``[0, n_species)`` of the model.
            steps: number of dynamics steps (>= 1), each ``dt`` ps.
            samples: ensemble size K (>= 1).
            seed: seed of the SDE noise (None: torch's global generator).
            allow_large: run a rollout over the memory bound of :mod:`openmm_closure.budget`.

        Returns:
            A :class:`SurrogateResult` with T = steps + 1 times.

        Raises:
            ValueError: bad shapes, non-finite positions, species the model does not
                know, steps or samples < 1, a seed that is not an integer, or a rollout
                whose memory estimate passes the bound (the estimate is named).
        """
        from ..budget import check_rollout, check_seed

        steps, samples = int(steps), int(samples)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        check_seed(seed)
        check_rollout(steps, samples, self.model.dim, allow_large)
        z0 = self.initial_state(positions, types)
        return self.run_state(z0, steps, samples=samples, seed=seed, allow_large=allow_large)

    def run_state(self, z0: Any, steps: int, samples: int = 1, seed: Optional[int] = None,
                  allow_large: bool = False) -> SurrogateResult:
        """Extrapolate a scaled state z0 (D,) (or members (K, D)) with the compiled rollout.

        Checks the out-of-distribution guard (:mod:`openmm_closure.couple.guard`): the first
        step a member leaves the training range (with margin) is recorded in the result
        and reported once with an :class:`~openmm_closure.couple.guard.OutOfRangeWarning`.

        Returns:
            A :class:`SurrogateResult` with T = steps + 1 times.
        """
        import warnings

        from .fast_rollout import compiled_rollout
        from .guard import OutOfRangeWarning, bound, first_exit

        traj = compiled_rollout(self.model, z0, int(steps), samples=int(samples), dt=self.dt, seed=seed,
                                allow_large=allow_large)
        raw = self.model.unscale(traj).detach().cpu().numpy().astype(np.float64)
        times = np.arange(int(steps) + 1, dtype=np.float64) * self.dt
        res = SurrogateResult(
            times=times,
            names=self.names,
            samples=raw,
            macro_dim=int(self.model.macro_dim),
            stochastic=bool(getattr(self.model.dynamics, "stochastic", False)),
        )
        exit_ = first_exit(traj, bound(self.model))
        if exit_ is not None:
            t, k, d = exit_
            res.ood_step, res.ood_time, res.ood_component = t, float(times[t]), self.names[d]
            warnings.warn(
                f"the surrogate left the range of z seen in training at t = {times[t]:g} ps "
                f"(step {t}, member {k}, component {self.names[d]}); later values are extrapolations",
                OutOfRangeWarning, stacklevel=2,
            )
        return res


def types_from_names(names: Sequence[str], species: Sequence[str]) -> np.ndarray:
    """Species indices (n,) int64 of particle names, in the order of the model's ``species``.

    Raises:
        ValueError: a name the model does not know.
    """
    index = {str(s): i for i, s in enumerate(species)}
    unknown = sorted({str(n) for n in names} - set(index))
    if unknown:
        raise ValueError(f"species {unknown} unknown to this model, which was trained on {list(species)}")
    return np.array([index[str(n)] for n in names], dtype=np.int64)


def check_species_names(names: Optional[Sequence[str]], species: Sequence[str]) -> None:
    """Refuse a configuration whose species names differ from the model's.

    Arguments:
        names: the configuration's species names in index order (e.g. a dataset's
            ``manifest["species"]``), or None when unknown.
        species: the model's species names (``model.config["species"]``).

    Raises:
        ValueError: both are known and they differ. Models trained without species
            names (named ``"0"``, ``"1"``, ...) accept any names.

    Example:
        >>> check_species_names(["A", "B"], ["A", "B"])
        >>> check_species_names(["A", "B"], ["0", "1"])     # names unknown: accepted
        >>> check_species_names(["B", "A"], ["A", "B"])
        Traceback (most recent call last):
        ...
        ValueError: the configuration's species ['B', 'A'] differ from the model's ['A', 'B']
    """
    species = [str(s) for s in species or []]
    unnamed = species == [str(i) for i in range(len(species))]  # training's fallback: names unknown
    if names and species and not unnamed and [str(n) for n in names] != species:
        raise ValueError(f"the configuration's species {list(names)} differ from the model's {species}")


def from_simulation(simulation: Any, model: Any, steps: int, samples: int = 1,
                    seed: Optional[int] = None, types: Optional[Any] = None,
                    dt: Optional[float] = None) -> SurrogateResult:
    """Run the surrogate from the current state of an ``openmm.app.Simulation``.

    Arguments:
        simulation: the simulation; its context's positions are read (nm).
        model: a ClosureModel or a model directory.
        steps, samples, seed, dt: as in :meth:`SurrogateIntegrator.run`.
        types: (n,) species indices; default from the topology's atom names matched
            against the model's species names (one-species models: all 0).

    Returns:
        A :class:`SurrogateResult`.
    """
    from openmm import unit

    integ = model if isinstance(model, SurrogateIntegrator) else SurrogateIntegrator(model, dt=dt)
    state = simulation.context.getState(getPositions=True)
    pos = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
    if types is None:
        species = list(integ.model.config.get("species") or [])
        if integ.model.n_species == 1:
            types = np.zeros(len(pos), dtype=np.int64)
        else:
            types = types_from_names([a.name for a in simulation.topology.atoms()], species)
    return integ.run(pos, types, steps, samples=samples, seed=seed)

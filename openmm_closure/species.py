"""Species indices and state component names: the checks every consumer of a model shares.

Torch-free (numpy), so the model, the surrogate, the hand-over wrapper, the exporters
and the reporters give the same one-line error for the same bad input.

Example:
    >>> check_species([0, 1, 1], 2).tolist()
    [0, 1, 1]
    >>> check_species([0, 2], 2, species=["A", "B"], system="lj-mixing")
    Traceback (most recent call last):
    ...
    ValueError: species index out of range: the model was trained on 'lj-mixing' with 2 species ['A', 'B'] (types 0..1), got types in [0, 2]; is this a configuration of a different system?
    >>> state_names(["energy"], 2)
    ['energy', 'zhat_0', 'zhat_1']
"""

from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["check_species", "state_names", "latent_names"]


def check_species(types: Any, n_species: int, species: Optional[Sequence] = None,
                  system: Optional[str] = None) -> np.ndarray:
    """Species indices (n,) as int64, refused unless integers in ``[0, n_species)``.

    Arguments:
        types: (n,) or (B, n) species indices (numpy, list, or a CPU tensor); floats are
            accepted only when they hold whole numbers.
        n_species: number of species S the model knows.
        species: the model's species names (for the message).
        system: the model's training system (for the message).

    Returns:
        the indices as an int64 numpy array of the input's shape.

    Raises:
        ValueError: non-integer values, or an index outside ``[0, n_species)``.
    """
    t = np.asarray(types)
    if t.dtype == np.bool_ or np.iscomplexobj(t) or not (np.issubdtype(t.dtype, np.integer)
                                                          or np.issubdtype(t.dtype, np.floating)):
        raise ValueError(f"types must be integer species indices, got dtype {t.dtype}")
    if np.issubdtype(t.dtype, np.floating):
        if not np.isfinite(t).all() or not (t == np.round(t)).all():
            raise ValueError("types must be integer species indices; got non-integer values "
                             "(e.g. 0.9): pass an int array")
    t = t.astype(np.int64)
    k = int(n_species)
    if t.size and (t.min() < 0 or t.max() >= k):
        names = list(species) if species else list(range(k))
        raise ValueError(
            f"species index out of range: the model was trained on {system or '?'!r} with {k} species "
            f"{names} (types 0..{k - 1}), got types in [{int(t.min())}, {int(t.max())}]; "
            f"is this a configuration of a different system?"
        )
    return t


def latent_names(latent_dim: int) -> list:
    """Names of the closure variables: ``zhat_0``, ..., ``zhat_{d-1}``."""
    return [f"zhat_{i}" for i in range(int(latent_dim))]


def state_names(observables: Sequence[str], latent_dim: int) -> list:
    """Names of the state z = [z̄, ẑ] components: the observables, then ``zhat_i``."""
    return [str(o) for o in observables] + latent_names(latent_dim)

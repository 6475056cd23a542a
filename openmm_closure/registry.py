"""One registry per extension kind, open to other packages through entry points.

A :class:`Registry` maps a name (``--system lj-mixing``, ``--dynamics sde``, an observable's
name) to one record. The package fills it with its own entries; another package adds its
own without editing this one, either in Python (``registry.register(name, record)``) or
through a Python entry point in the registry's group, declared in that package's metadata::

    [project.entry-points."openmm_closure.observables"]
    my_order = "my_package.observables:MY_ORDER"

An entry point is loaded the first time its name is looked up, so ``--help`` lists a
plugin's names without importing it. Torch-free and OpenMM-free: the physics side's
registries use it too.

Example:
    >>> colours = Registry("colour", group=None)
    >>> colours.register("red", (255, 0, 0))
    (255, 0, 0)
    >>> colours["red"], "blue" in colours, colours.names()
    ((255, 0, 0), False, ('red',))
    >>> colours["blue"]
    Traceback (most recent call last):
    ...
    openmm_closure.registry.UnknownName: unknown colour 'blue'; choose one of ['red']
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Callable, Iterator, Optional

__all__ = ["Registry", "UnknownName", "entry_point_names"]


class UnknownName(KeyError, ValueError):
    """A name no entry of the registry has (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def entry_point_names(group: str) -> dict[str, metadata.EntryPoint]:
    """The installed distributions' entry points of ``group``, by name (nothing is imported)."""
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


class Registry:
    """Name -> record for one extension kind.

    Arguments:
        kind: what an entry is, for messages (``"system"``, ``"observable"``).
        group: the entry-point group other packages register under
            (``"openmm_closure.systems"``); None: Python registration only.
        check: called as ``check(name, record)`` before an entry is accepted; raises
            ``ValueError`` naming what is wrong with it (e.g. not a ``Dynamics``).
    """

    def __init__(self, kind: str, group: Optional[str] = None,
                 check: Optional[Callable[[str, Any], None]] = None) -> None:
        self.kind = kind
        self.group = group
        self._check = check
        self._entries: dict[str, Any] = {}
        self._pending: Optional[dict[str, metadata.EntryPoint]] = None

    def register(self, name: str, record: Any, *, replace: bool = False) -> Any:
        """Add ``record`` under ``name`` and return it.

        Raises:
            ValueError: ``name`` is taken by another record (pass ``replace=True`` to
                replace it on purpose), is empty, or ``check`` refuses the record.
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"a {self.kind} name must be a non-empty string without surrounding blanks; got {name!r}")
        if self._check is not None:
            self._check(name, record)
        old = self._entries.get(name, record)
        if old is not record and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered ({old!r}); pass replace=True to replace it")
        self._entries[name] = record
        return record

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a no-op when absent): tests that register an entry clean up with it."""
        self._entries.pop(name, None)
        if self._pending is not None:
            self._pending.pop(name, None)

    def _plugins(self) -> dict[str, metadata.EntryPoint]:
        if self._pending is None:
            self._pending = entry_point_names(self.group) if self.group else {}
        return self._pending

    def _load(self, name: str) -> None:
        ep = self._plugins().pop(name)
        try:
            record = ep.load()
        except Exception as exc:  # a broken plugin names itself, not a traceback deep in importlib
            raise ValueError(f"{self.kind} {name!r} from entry point {ep.value!r} "
                             f"(group {self.group}) failed to load: {exc}") from exc
        if name not in self._entries:  # a plugin module may register itself on import
            self.register(name, record)

    def names(self) -> tuple[str, ...]:
        """Every name, the package's first then the plugins' (plugins are not imported)."""
        return tuple(self._entries) + tuple(n for n in self._plugins() if n not in self._entries)

    def __getitem__(self, name: str) -> Any:
        if name not in self._entries:
            if name in self._plugins():
                self._load(name)
            else:
                raise UnknownName(f"unknown {self.kind} {name!r}; choose one of {sorted(self.names())}")
        return self._entries[name]

    def get(self, name: str, default: Any = None) -> Any:
        """The record of ``name``, or ``default`` when there is none."""
        return self[name] if name in self else default

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._plugins()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self) -> list[tuple[str, Any]]:
        """(name, record) for every entry, loading the plugins' entries."""
        return [(n, self[n]) for n in self.names()]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, names={list(self.names())})"

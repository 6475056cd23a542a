"""One module per ``openmm-closure`` subcommand.

Each module exposes ``configure(parser)`` (adds the subcommand's arguments) and
``run(args) -> int`` (executes it and returns the exit code). The modules hold only
argument handling and printing; the work is done by library functions that Python
users call directly. :mod:`openmm_closure.cli` imports a module only when its
subcommand is chosen, so ``simulate`` never loads torch. Nothing in the library imports
this package.
"""

__all__: list[str] = []

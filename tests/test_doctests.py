"""The ``>>>`` examples in the docstrings of every module run and print what they say.

Examples that need data or a long run are marked ``# doctest: +SKIP`` where they stand;
everything else runs here, in a temporary working directory.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

from test_imports import MODULES



def _has_examples(path) -> bool:
    return ">>>" in path.read_text()


WITH_EXAMPLES = sorted(n for n, p in MODULES.items() if _has_examples(p))


def test_examples_are_found():
    assert len(WITH_EXAMPLES) >= 5


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name, tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs=vars(module).copy()):
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of {name} failed (see the output above)"

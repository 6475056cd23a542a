"""Sphinx directive ``cli-reference``: the CLI reference page, generated from the
``openmm-closure`` argument parsers (the text comes from :mod:`cli_reference_text`)."""

from __future__ import annotations

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

from cli_reference_text import cli_reference_rst

__all__ = ["setup"]


class CliReference(SphinxDirective):
    """``.. cli-reference::``: one section per subcommand, every argument in a table."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        node = nodes.section()
        node.document = self.state.document
        text = StringList(cli_reference_rst().splitlines(), source="openmm_closure.cli")
        nested_parse_with_titles(self.state, text, node)
        return node.children


def setup(app):
    app.add_directive("cli-reference", CliReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

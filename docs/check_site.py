"""Check the built site as a reader's browser would load it (run by ``make docs``).

- every page of the source tree was built;
- no page loads a script, stylesheet, image or font from another site (the pages must
  read offline): only links a reader clicks may point elsewhere;
- the CLI reference lists every subcommand.

    python docs/check_site.py docs/_build/html
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

DOCS = Path(__file__).resolve().parent


class _Loads(HTMLParser):
    """Collect the URLs a page makes the browser fetch (not the ones a reader follows)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "audio", "video", "source") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or "") + (a.get("as") or "style"):
            self.urls.append(a["href"])


def check(site: Path) -> list[str]:
    problems = []
    sources = [p for p in DOCS.rglob("*.md") if "_build" not in p.parts]
    for src in sources:
        page = site / src.relative_to(DOCS).with_suffix(".html")
        if not page.is_file():
            problems.append(f"{page} was not built (from {src.relative_to(DOCS)})")
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for raw in (".. code-block::", ".. list-table::", ".. automodule::", "```{"):
            if raw in text:
                problems.append(f"{page.relative_to(site)} shows unrendered markup {raw!r}")
        parser = _Loads()
        parser.feed(page.read_text(encoding="utf-8"))
        for url in parser.urls:
            if re.match(r"^(https?:)?//", url):
                problems.append(f"{page.relative_to(site)} loads {url} from another site")
    for css in site.rglob("*.css"):
        for url in re.findall(r"url\(\s*['\"]?((?:https?:)?//[^)'\"]+)", css.read_text(encoding="utf-8", errors="replace")):
            problems.append(f"{css.relative_to(site)} loads {url} from another site")
    cli = site / "cli.html"
    if cli.is_file():
        sys.path.insert(0, str(DOCS.parent))
        from openmm_closure.cli import COMMANDS

        html = cli.read_text(encoding="utf-8")
        problems += [f"cli.html lacks openmm-closure {name}" for name in COMMANDS
                     if not re.search(rf"<h\d[^>]*>openmm-closure {name}<", html)]
        if "<table" not in html:
            problems.append("cli.html has no table of options")
    return problems


def main(argv: list[str]) -> int:
    site = Path(argv[1] if len(argv) > 1 else DOCS / "_build" / "html")
    problems = check(site)
    for p in problems:
        print(f"check_site: {p}", file=sys.stderr)
    if not problems:
        print(f"check_site: {sum(1 for _ in site.rglob('*.html'))} pages, all built, nothing loaded from another site")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

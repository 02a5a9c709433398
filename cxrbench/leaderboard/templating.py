"""The Jinja2 environments of the leaderboard pages; templates in ``cxrbench/leaderboard/templates/``.

The markdown page's environment does not autoescape: its templates escape every plugin-supplied string
explicitly (the ``text`` and ``code`` filters of :mod:`cxrbench.leaderboard.markdown`). The HTML page's
environment autoescapes, with :func:`html.escape` (quotes included) rather than markupsafe's escaping, so a
value is written as the page has always written it (``'`` as ``&#x27;``).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

#: The folder of the templates, inside the package ``cxrbench.leaderboard`` (package data of the wheel).
TEMPLATE_FOLDER = "templates"
MARKDOWN_TEMPLATE = "leaderboard.md.j2"
HTML_TEMPLATE = "leaderboard.html.j2"
TEMPLATES: tuple[str, ...] = (MARKDOWN_TEMPLATE, HTML_TEMPLATE, "macros.html.j2")


def html_escape(value: Any) -> Markup:
    """``value`` as HTML text (``&``, ``<``, ``>``, ``"`` and ``'`` escaped), unless it is markup already."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value), quote=True))


def environment(*, autoescape_html: bool, filters: dict[str, Callable[..., Any]],
                template_globals: dict[str, Any] | None = None) -> Environment:
    """An environment over the leaderboard templates with ``filters`` and ``template_globals``.

    ``autoescape_html``: autoescape ``*.html.j2`` templates, every value a template writes going through
    :func:`html_escape`; otherwise nothing is escaped unless a template says so (the markdown page).
    """
    env = Environment(
        loader=PackageLoader("cxrbench.leaderboard", TEMPLATE_FOLDER),
        autoescape=select_autoescape(["html.j2"], default=False) if autoescape_html else False,
        finalize=html_escape if autoescape_html else None,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(filters)
    env.globals.update(template_globals or {})
    return env

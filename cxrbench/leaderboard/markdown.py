"""The leaderboard as GitHub markdown (``README.md``): one tabulate ``github`` table per table of the view.

The page renders the view that the HTML page renders too (:mod:`cxrbench.leaderboard.view`), with the
template ``templates/leaderboard.md.j2``: the same tables in the same column order (the entry's name
first), with links to the other files, each result file, the attention reports and the docs
(:mod:`cxrbench.leaderboard.links`). Markdown escaping is explicit: the template passes every
plugin-supplied string through the ``text`` filter (:func:`markdown_text`) or, in a code span, the ``code``
filter (:func:`markdown_code`); table cells are escaped by :func:`markdown_cell`, all but numbers.
"""

from __future__ import annotations

import html
from functools import cache

from jinja2 import Environment
from tabulate import tabulate

from cxrbench.leaderboard.explanation import no_results
from cxrbench.leaderboard.templating import MARKDOWN_TEMPLATE, environment
from cxrbench.leaderboard.view import MAX_MESSAGE_CHARS, Cell, Link, PageView, Table

__all__ = ["MAX_MESSAGE_CHARS", "markdown_cell", "markdown_code", "markdown_link", "markdown_table",
           "markdown_text", "render_markdown"]

_MARKDOWN_SPECIAL = "\\`*_[]|#"


def markdown_text(text: str) -> str:
    """Make plugin-supplied ``text`` safe in a markdown table cell.

    Whitespace runs (newlines included) become one space, HTML-special characters become entities and
    markdown punctuation is backslash-escaped, so a name can neither break the table nor inject markup.
    """
    text = " ".join(str(text).split())
    text = "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text)
    return html.escape(text, quote=False)


def markdown_code(text: str) -> str:
    """``text`` for a code span outside tables: one line, no backtick (escapes do not work in code spans)."""
    return " ".join(str(text).split()).replace("`", "'")


def markdown_link(href: str, text: str) -> str:
    """``[text](href)`` (text already escaped; ``href`` a relative URL), or the bare text without a link."""
    return f"[{text}]({href})" if href else text


def link_markdown(link: Link) -> str:
    return markdown_link(link.href, markdown_text(link.text))


def markdown_cell(cell: Cell) -> str:
    """A cell as markdown: its links, or its short form, or its text and interval; escaped unless a number,
    in italics when emphasized."""
    if cell.links:
        return " ".join(link_markdown(link) for link in cell.links)
    if cell.short is not None:
        text = cell.short
    else:
        text = f"{cell.text} {cell.interval}" if cell.interval else cell.text
    if cell.kind == "number":
        return text
    text = markdown_text(text)
    return f"*{text}*" if cell.emphasis else text


def markdown_table(table: Table) -> str:
    """A tabulate ``github`` table of ``table``'s columns that are not HTML-only."""
    shown = [i for i, column in enumerate(table.columns) if not column.html_only]
    columns = [table.columns[i] for i in shown]
    headers = [markdown_text(column.markdown_header or column.header) for column in columns]
    rows = [[markdown_cell(row.cells[i]) for i in shown] for row in table.rows]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True,
                    colalign=[column.align for column in columns])


@cache
def _environment() -> Environment:
    filters = {"text": markdown_text, "code": markdown_code, "link": link_markdown,
               "link_to": markdown_link, "table": markdown_table}
    return environment(autoescape_html=False, filters=filters, template_globals={"no_results": no_results})


def render_markdown(view: PageView) -> str:
    """The whole ``README.md`` text of the page view (:func:`cxrbench.leaderboard.view.page_view`)."""
    return _environment().get_template(MARKDOWN_TEMPLATE).render(page=view)

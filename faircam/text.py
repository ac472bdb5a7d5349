"""Data shown as literal text in Markdown: the one escaping helper for pages, the sidebar and the model card.

Label values, file names, folder paths, error messages that quote them and cache metadata come
from files other people made. Put into Markdown as they are, `[x](url)` becomes a live link,
`![](url)` an image every viewer's browser fetches, and a backtick breaks out of inline code.
(HTML contexts, the report's own markup, escape with `html.escape`.)
"""

from __future__ import annotations

import re

# Every ASCII punctuation mark: CommonMark lets each be escaped with a backslash, and together they
# cover links, images, emphasis, code, tables, HTML, autolinks, Streamlit's :colour[...] and $math$.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def md(value: object, code: bool = False) -> str:
    """`value` as Markdown that renders as exactly its text, on one line; `code=True` as inline code.

    Backslash escapes do not work inside inline code, so a code span is fenced with one backtick
    more than the longest run of backticks in the text (CommonMark's rule), padded when needed.
    """
    text = " ".join(str(value).splitlines())
    if not code or not text.strip():  # a code span needs some text
        return _PUNCTUATION.sub(r"\\\1", text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" or (text[0] == " " and text[-1] == " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"

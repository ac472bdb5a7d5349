"""Data shown as literal text: the one escaping module, for Markdown (pages, the sidebar, tables, the model card)
and for HTML (the report).

Label values, file names, folder paths, error messages that quote them, cache metadata, registry entries and
checkpoint metadata come from files other people made. Put into Markdown as they are, `[x](url)` becomes a live
link, `![](url)` an image every viewer's browser fetches, a backtick breaks out of inline code, and a bare
`https://…`, `www.…` or e-mail address becomes a link (GitHub's autolinks, which Streamlit's Markdown follows).
Put into HTML as they are, `<img src=…>` is fetched and `<script>` runs.
"""

from __future__ import annotations

import html
import re

# Every ASCII punctuation mark: CommonMark lets each be escaped with a backslash, and together they
# cover links, images, emphasis, code, tables, HTML, Streamlit's :colour[...] and $math$.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# GitHub's autolinks are found in the text after backslash escapes are undone (remark-gfm), so escaping their
# characters does not stop them: an invisible word joiner (U+2060) inside `://`, after `@` and inside `www.`
# does, and reads the same.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=@)|(?<=www)(?=\.)", re.IGNORECASE)


def md(value: object, code: bool = False) -> str:
    """`value` as Markdown that renders as exactly its text, on one line; `code=True` as inline code.

    Backslash escapes do not work inside inline code, so a code span is fenced with one backtick
    more than the longest run of backticks in the text (CommonMark's rule), padded when needed;
    code spans are never autolinked.
    """
    text = " ".join(str(value).splitlines())
    if not code or not text.strip():  # a code span needs some text
        return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, text))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" or (text[0] == " " and text[-1] == " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def html_text(value: object) -> str:
    """`value` as HTML text: every character that could start a tag, an entity or end an attribute escaped."""
    return html.escape(str(value))

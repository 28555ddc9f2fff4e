"""The docs site's build hook (mkdocs.yml's ``hooks``): code in a table breaks only at its spaces.

A browser may end a line inside code at a hyphen (``--job-`` then ``monitoring-interval``), and
mkdocs-material's theme lets it break code anywhere in a word. Each space-separated word of a table's
inline code (or the whole of a short one, such as ``rq-gevent -n 2``) goes into a ``<span>`` that
docs/assets/extra.css keeps on one line; the text, and what a reader copies, is unchanged.
"""

import re

TABLE = re.compile(r"<table>.*?</table>", flags=re.S)
CODE = re.compile(r"<code>([^<]*)</code>")
SHORT = 24  # characters (as in the HTML) of code that stays whole: a short option or command


def words_kept_whole(code: re.Match) -> str:
    words = [code.group(1)] if len(code.group(1)) <= SHORT else code.group(1).split(" ")
    return "<code>" + " ".join(f"<span>{word}</span>" if word else "" for word in words) + "</code>"


def on_page_content(html: str, **kwargs: object) -> str:
    return TABLE.sub(lambda table: CODE.sub(words_kept_whole, table.group(0)), html)

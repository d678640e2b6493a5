"""Chat text → the HTML subset Qt's rich-text labels draw, with code blocks coloured by pygments.

A small renderer on purpose: model answers use a handful of Markdown features (fences, inline
code, emphasis, headings, lists, quotes, links), and it must cope with *unfinished* text while an
answer streams in — an open ``` fence is drawn as code up to the end instead of swallowing nothing.
No Qt here: the view decides where the HTML goes; ``code_blocks`` lets it copy a block verbatim.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)")  # CommonMark fence opener, info word
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)")
_ORDERED = re.compile(r"^\s*(\d{1,9})[.)]\s+(.*)")
_QUOTE = re.compile(r"^ {0,3}>\s?(.*)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])|(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^\s)]+)\)")
_HEADING_SIZES = {1: "x-large", 2: "large", 3: "medium", 4: "medium", 5: "small", 6: "small"}
# pygments' built-in styles: "default" is GitHub-like on light backgrounds, "monokai" its dark twin
LIGHT_STYLE, DARK_STYLE = "default", "monokai"


@dataclass(frozen=True)
class RenderedMarkdown:
    """The HTML for a label, and each code block's raw text in order (for its Copy link)."""

    html: str
    code_blocks: tuple[str, ...]


def copy_link(index: int) -> str:
    """The href of code block ``index``'s Copy link; the view maps it back with :func:`copied_index`."""
    return f"copy-code:{index}"


def copied_index(href: str) -> int | None:
    if not href.startswith("copy-code:"):
        return None
    tail = href.partition(":")[2]
    return int(tail) if tail.isdigit() else None


def render_markdown(text: str, *, dark: bool = False) -> RenderedMarkdown:
    """Render ``text`` (possibly cut off mid-stream) for a rich-text label."""
    out: list[str] = []
    codes: list[str] = []
    para: list[str] = []
    items: list[str] = []
    list_tag = ""
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0

    list_start = 1

    def flush() -> None:
        nonlocal list_tag
        if para:
            out.append("<p>" + "<br>".join(_inline(line) for line in para) + "</p>")
            para.clear()
        if items:
            start = f' start="{list_start}"' if list_tag == "ol" and list_start != 1 else ""
            out.append(f"<{list_tag}{start}>" + "".join(f"<li>{it}</li>" for it in items) + f"</{list_tag}>")
            items.clear()
            list_tag = ""

    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            run, lang = fence.group(1), fence.group(2)
            body: list[str] = []
            i += 1
            while i < len(lines) and not _closes(lines[i], run):
                body.append(lines[i])
                i += 1
            i += 1  # past the closing fence (or the end of an unfinished answer)
            code = "\n".join(body)
            out.append(_code_block(code, lang, len(codes), dark=dark))
            codes.append(code)
            continue
        heading, bullet, ordered, quote = (p.match(line) for p in (_HEADING, _BULLET, _ORDERED, _QUOTE))
        if not line.strip():
            flush()
        elif heading:
            flush()
            level = len(heading.group(1))
            size = _HEADING_SIZES[level]
            out.append(f'<p style="font-size:{size}; font-weight:bold">{_inline(heading.group(2))}</p>')
        elif bullet or ordered:
            tag = "ul" if bullet else "ol"
            if para or (items and list_tag != tag):
                flush()
            if not items:  # "3." after a blank line continues a list at 3, as Markdown does
                list_start = int(ordered.group(1)) if ordered else 1
            list_tag = tag
            items.append(_inline(bullet.group(1) if bullet else ordered.group(2)))  # type: ignore[union-attr]
        elif quote:
            flush()
            out.append(f'<blockquote style="color:gray">{_inline(quote.group(1))}</blockquote>')
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + _inline(line.strip())  # a wrapped list item
        else:
            if items:
                flush()
            para.append(line)
        i += 1
    flush()
    return RenderedMarkdown("".join(out), tuple(codes))


def stable_prefix(text: str) -> int:
    """How much of a streaming ``text`` is finished blocks: up to its last blank line or closing
    fence outside a code block. That part renders the same however the answer goes on, so the view
    draws it once and re-renders only the rest."""
    end = pos = 0
    run: str | None = None
    for line in text.splitlines(keepends=True):
        pos += len(line)
        if not line.endswith("\n"):
            break  # the line being written
        fence = _FENCE.match(line)
        if run is None and fence:
            run = fence.group(1)
        elif run is not None and _closes(line, run):
            run = None
            end = pos
        elif run is None and not line.strip():
            end = pos
    return end


def _closes(line: str, run: str) -> bool:
    stripped = line.strip()
    return (
        bool(stripped) and stripped[0] == run[0] and len(stripped) >= len(run) and set(stripped) == {run[0]}
    )


def _inline(text: str) -> str:
    """Escape, then inline code (verbatim), links, bold and italic."""
    parts: list[str] = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        parts.append(_emphasis(text[pos : m.start()]))
        parts.append(f"<code>{html.escape(m.group(2).strip(), quote=False)}</code>")
        pos = m.end()
    parts.append(_emphasis(text[pos:]))
    return "".join(parts)


def _emphasis(text: str) -> str:
    s = html.escape(text, quote=False)
    links: list[str] = []  # set aside so emphasis never rewrites an address's underscores

    def hold(m: re.Match[str]) -> str:
        links.append(f'<a href="{m.group(2).replace(chr(34), "&quot;")}">{m.group(1)}</a>')
        return f"\x00{len(links) - 1}\x00"

    s = _LINK.sub(hold, s)
    s = _BOLD.sub(lambda m: f"<b>{m.group(1) or m.group(2)}</b>", s)
    s = _ITALIC.sub(lambda m: f"<i>{m.group(1) or m.group(2)}</i>", s)
    return re.sub("\x00(\\d+)\x00", lambda m: links[int(m.group(1))], s)


def _code_block(code: str, lang: str, index: int, *, dark: bool) -> str:
    """A shaded one-column table (Qt draws table backgrounds, not <pre> ones) with a Copy link."""
    background, spans = _highlight(code, lang.lower(), DARK_STYLE if dark else LIGHT_STYLE)
    label = html.escape(lang) if lang else "code"
    return (
        f'<table width="100%" cellspacing="0" cellpadding="6" bgcolor="{background}">'
        f'<tr><td><span style="color:gray">{label}</span>&nbsp;&nbsp;'
        f'<a href="{copy_link(index)}">Copy code</a></td></tr>'
        f'<tr><td><pre style="margin:0; white-space:pre-wrap">{spans}</pre></td></tr></table>'
    )


@lru_cache(maxsize=256)
def _highlight(code: str, lang: str, style: str) -> tuple[str, str]:
    """(background colour, coloured spans). Cached: a streaming answer re-renders its earlier,
    finished blocks 20 times a second."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(lang, stripnl=False) if lang else TextLexer(stripnl=False)
    except ClassNotFound:
        lexer = TextLexer(stripnl=False)
    formatter = HtmlFormatter(nowrap=True, noclasses=True, style=style)
    background = formatter.style.background_color or ("#272822" if style == DARK_STYLE else "#f8f8f8")
    return background, highlight(code, lexer, formatter).rstrip("\n")

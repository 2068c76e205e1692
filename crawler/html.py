"""HTML pass: decode a page, then split what a reader sees from what is hidden in the markup.

Shared by the crawler and the WARC reader. One lxml DOM walk (libxml2's HTML parser; no browser, no
external stylesheets) produces:

* ``text``: the visible text in reading order, block elements on their own lines and paragraphs
  separated by blank lines; script/style/template dropped; whitespace collapsed (``<pre>`` kept).
* ``hidden``: every span a person would not see, with the channel that hides it. These are the
  channels of indirect prompt injection found in the wild (Greshake et al. 2023, arXiv:2302.12173;
  docs/THREATS.md P-HIDE): inline ``display:none`` / ``visibility:hidden`` / ``opacity:0`` /
  ``font-size:0`` / off-screen positioning / zero-size boxes / text the colour of its background,
  the same properties set by simple rules (``tag``, ``.class``, ``#id``) in the page's own
  ``<style>`` blocks, the ``hidden`` and ``aria-hidden`` attributes, well-known "hidden" utility
  classes, HTML comments, ``<noscript>``, ``<meta>`` content and ``alt`` / ``title`` / ``aria-label``
  attributes.
* Legitimate hiding is recognised and recorded under its own channel, ``legit_sr_only`` (screen-reader
  text and skip links) or ``legit_collapsed`` (closed ``<details>``, collapsed menus that are mostly
  links), so that the detector can hold it to a higher bar.

What the DOM pass cannot see (external CSS, scripts that hide or reveal text) is out of scope; the
cloaking probe covers pages that change with the client.
"""

from __future__ import annotations

import codecs
import functools
import html as html_lib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from lxml import etree


class Extracted(NamedTuple):
    text: str
    hidden: list[tuple[str, str]]  # (channel, text), in document order
    title: str | None
    encoding: str


# ----------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
# <meta charset=...> and <meta http-equiv="content-type" content="...; charset=...">, looked for in
# the first bytes only, as the HTML standard's prescan does (it reads 1024; pages with a long
# preamble of comments are common, so we read more).
_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([\w.:-]+)|<\?xml[^>]+?encoding\s*=\s*["']([\w.:-]+)""",
    re.IGNORECASE,
)
_PRESCAN_BYTES = 4096
# The HTML standard decodes these labels as windows-1252, a superset of their printable range
# (https://encoding.spec.whatwg.org/#names-and-labels).
_AS_WINDOWS_1252 = {"latin_1", "iso8859-1", "ascii", "cp1252"}


def _codec(label: str | None) -> str | None:
    """Python codec name for a charset label, or None if Python does not know it."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'").lower()).name
    except LookupError:
        return None
    return "windows-1252" if name in _AS_WINDOWS_1252 else name


def decode_html(body: bytes, content_type: str | None) -> tuple[str, str]:
    """Decode an HTML body; returns (text, encoding used).

    Order, as in the HTML standard: a byte-order mark, then the Content-Type header's charset, then a
    ``<meta>`` charset in the first bytes, then sniffing: UTF-8 if the bytes are valid UTF-8, else
    windows-1252 (the standard's fallback for Western pages; it decodes any latin-1 text). Bytes that
    do not fit the chosen encoding become U+FFFD rather than failing the page.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace"), name
    encoding = None
    if content_type:
        m = _HEADER_CHARSET.search(content_type)
        encoding = _codec(m.group(1)) if m else None
    if encoding is None:
        m2 = _META_CHARSET.search(body[:_PRESCAN_BYTES])
        if m2:
            encoding = _codec((m2.group(1) or m2.group(2)).decode("ascii", errors="replace"))
            # A page whose own bytes are ASCII-compatible cannot really be UTF-16 (the standard says
            # to read it as UTF-8).
            if encoding and encoding.startswith("utf-16"):
                encoding = "utf-8"
    if encoding is not None:
        return body.decode(encoding, errors="replace"), encoding
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return body.decode("windows-1252", errors="replace"), "windows-1252"


# ----------------------------------------------------------------------------------------------
# CSS: just enough to read inline styles and simple rules
# ----------------------------------------------------------------------------------------------

# Properties that can hide text; rules that set none of them are dropped when a <style> is read.
_RELEVANT = frozenset(
    "display visibility opacity font-size font position left right top bottom text-indent margin-left "
    "margin-top transform clip clip-path color background background-color background-image width "
    "height max-height max-width overflow filter".split()
)


_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)


@functools.lru_cache(maxsize=4096)
def _declarations(style: str) -> dict[str, str]:
    """`prop: value; ...` -> {prop: value} (lower-cased, `!important` removed; last one wins)."""
    out: dict[str, str] = {}
    if "/*" in style:  # `display:/**/none` is still display:none
        style = _CSS_COMMENT.sub("", style)
    for decl in style.split(";"):
        prop, sep, value = decl.partition(":")
        if not sep:
            continue
        prop = prop.strip().lower()
        if prop in _RELEVANT:
            out[prop] = value.replace("!important", "").strip().lower()
    return out


_LENGTH = re.compile(r"(-?\d*\.?\d+)\s*(px|pt|em|rem|%|vw|vh|cm|mm|in|pc|ex|ch)?")


def _length_px(value: str) -> float | None:
    """A CSS length in pixels, roughly (1em = 16px, 1% and 1vw = 10px); None if not a length."""
    m = _LENGTH.match(value.strip())
    if not m:
        return None
    number = float(m.group(1))
    unit = m.group(2) or "px"
    scale = {
        "px": 1.0,
        "pt": 1.33,
        "em": 16.0,
        "rem": 16.0,
        "ex": 8.0,
        "ch": 8.0,
        "%": 0.16,
        "vw": 10.0,
        "vh": 10.0,
        "cm": 37.8,
        "mm": 3.78,
        "in": 96.0,
        "pc": 16.0,
    }[unit]
    return number * scale


# The classic off-screen tricks use -999px, -9999px, -10000px; anything past this is off any screen.
_OFFSCREEN_PX = -900.0
_SCALE_0 = re.compile(r"scale[xy3d]*\(\s*0(?:\.0*)?\s*[,)]")
_TRANSLATE = re.compile(r"translate(?:x|y|3d)?\(\s*(-?[\d.]+\w*)")


# In the `font` shorthand a bare number is a weight (700); the size has a unit (or is 0).
_FONT_SIZE_TOKEN = re.compile(r"(?:\d*\.?\d+(?:px|pt|em|rem|%|vw|vh|ex|ch)|0)(?:/|$)")


def _font_size(decls: dict[str, str]) -> str | None:
    size = decls.get("font-size")
    if size is None and "font" in decls:
        # `font: italic bold 0/1 serif`: the size is the first length, before any /line-height
        size = next((t.split("/")[0] for t in decls["font"].split() if _FONT_SIZE_TOKEN.match(t)), None)
    return size


# Channels a descendant can undo (visibility:visible, an absolute font-size), so they are tracked
# element by element instead of hiding the whole subtree.
_SOFT_CHANNELS = frozenset({"visibility_hidden", "font_size_0"})


def _hiding_property(decls: dict[str, str]) -> str | None:
    """The channel a set of declarations hides content with, or None. Colour is checked elsewhere."""
    for check in (
        _by_display,
        _by_opacity,
        _by_font_size,
        _by_position,
        _by_offset,
        _by_filter,
        _by_transform,
    ):
        channel = check(decls)
        if channel is not None:
            return channel
    return _by_overflow(decls)


def _offscreen(value: str | None) -> bool:
    px = _length_px(value) if value else None
    return px is not None and px <= _OFFSCREEN_PX


def _by_display(decls: dict[str, str]) -> str | None:
    display = decls.get("display")
    if display is not None and display.split()[0] == "none":
        return "display_none"
    if decls.get("visibility") in ("hidden", "collapse"):
        return "visibility_hidden"
    return None


def _by_opacity(decls: dict[str, str]) -> str | None:
    opacity = decls.get("opacity")
    if opacity is None:
        return None
    try:
        level = float(opacity[:-1]) / 100 if opacity.endswith("%") else float(opacity)
    except ValueError:
        level = 1.0
    return "opacity_0" if level <= 0.05 else None


def _by_font_size(decls: dict[str, str]) -> str | None:
    size_value = _font_size(decls)
    size = _length_px(size_value) if size_value is not None else None
    return "font_size_0" if size is not None and size <= 1.0 else None


def _by_position(decls: dict[str, str]) -> str | None:
    if decls.get("position") not in ("absolute", "fixed"):
        return None
    if any(_offscreen(decls.get(side)) for side in ("left", "top", "right", "bottom")):
        return "offscreen"
    clip = decls.get("clip", "") + decls.get("clip-path", "")
    if "rect(0" in clip or "rect(1px" in clip or "inset(50%" in clip or "inset(100%" in clip:
        return "offscreen"
    return None


def _by_offset(decls: dict[str, str]) -> str | None:
    if any(_offscreen(decls.get(prop)) for prop in ("text-indent", "margin-left", "margin-top")):
        return "offscreen"
    return None


def _by_filter(decls: dict[str, str]) -> str | None:
    return "opacity_0" if "opacity(0)" in decls.get("filter", "").replace(" ", "") else None


def _by_transform(decls: dict[str, str]) -> str | None:
    transform = decls.get("transform")
    if not transform:
        return None
    m = _TRANSLATE.search(transform)
    if m and _offscreen(m.group(1)):
        return "offscreen"
    return "zero_size" if _SCALE_0.search(transform) else None


def _by_overflow(decls: dict[str, str]) -> str | None:
    if "hidden" not in decls.get("overflow", ""):
        return None
    for prop in ("height", "width", "max-height", "max-width"):
        v = decls.get(prop)
        px = _length_px(v) if v else None
        if px is not None and px <= 1.0:
            return "zero_size"
    return None


@dataclass(frozen=True)
class _Rule:
    tag: str | None
    id: str | None
    classes: frozenset[str]
    decls: dict[str, str]
    specificity: tuple[int, int, int, int]  # (ids, classes, tags, source order)


_SIMPLE_SELECTOR = re.compile(r"([a-z][a-z0-9]*)?((?:[.#][\w-]+)*)", re.IGNORECASE)


def _skip_block(css: str, i: int) -> int:
    """Index just past the block whose `{` is at css[i] (nested braces counted)."""
    depth = 0
    while i < len(css):
        if css[i] == "{":
            depth += 1
        elif css[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def parse_style_rules(css: str, start_order: int = 0) -> list[_Rule]:
    """Rules with simple selectors (`tag`, `.class`, `#id`, and compounds like `p.note`) that set a
    property able to hide text. At-rules (@media, @supports ...) are skipped: whether they apply
    depends on the client, and their contents are usually layout."""
    css = _CSS_COMMENT.sub(" ", css)
    rules: list[_Rule] = []
    i = 0
    order = start_order
    while True:
        brace = css.find("{", i)
        if brace < 0:
            break
        prelude = css[i:brace].strip()
        if prelude.startswith("@") or "@" in prelude.rsplit(";", 1)[-1]:
            i = _skip_block(css, brace)
            continue
        end = css.find("}", brace)
        if end < 0:
            end = len(css)
        decls = _declarations(css[brace + 1 : end])
        i = end + 1
        if not decls:
            continue
        for selector in prelude.split(","):
            selector = selector.strip()
            m = _SIMPLE_SELECTOR.fullmatch(selector)
            if not selector or not m:
                continue  # combinators, attributes, pseudo-classes: not simple
            parts = re.findall(r"[.#][\w-]+", m.group(2) or "")
            ids = [p[1:] for p in parts if p[0] == "#"]
            classes = frozenset(p[1:].lower() for p in parts if p[0] == ".")
            if len(ids) > 1:
                continue
            tag = m.group(1).lower() if m.group(1) else None
            order += 1
            rules.append(
                _Rule(
                    tag,
                    ids[0] if ids else None,
                    classes,
                    dict(decls),
                    (len(ids), len(classes), int(tag is not None), order),
                )
            )
    return rules


class _StyleSheet:
    """Rules indexed by their most specific part, so matching an element costs a few dict lookups."""

    def __init__(self, rules: list[_Rule]) -> None:
        self.by_id: dict[str, list[_Rule]] = {}
        self.by_class: dict[str, list[_Rule]] = {}
        self.by_tag: dict[str, list[_Rule]] = {}
        for rule in rules:
            if rule.id is not None:
                self.by_id.setdefault(rule.id, []).append(rule)
            elif rule.classes:
                self.by_class.setdefault(min(rule.classes), []).append(rule)
            elif rule.tag is not None:
                self.by_tag.setdefault(rule.tag, []).append(rule)

    def __bool__(self) -> bool:
        return bool(self.by_id or self.by_class or self.by_tag)

    def match(self, tag: str, el_id: str | None, classes: list[str]) -> dict[str, str]:
        found: list[_Rule] = list(self.by_tag.get(tag, ()))
        if el_id and el_id in self.by_id:
            found.extend(self.by_id[el_id])
        for c in classes:
            found.extend(self.by_class.get(c, ()))
        if not found:
            return {}
        decls: dict[str, str] = {}
        cls = set(classes)
        for rule in sorted(found, key=lambda r: r.specificity):
            if (
                (rule.tag is None or rule.tag == tag)
                and (rule.id is None or rule.id == el_id)
                and rule.classes <= cls
            ):
                decls.update(rule.decls)
        return decls


# ----------------------------------------------------------------------------------------------
# Colour
# ----------------------------------------------------------------------------------------------

RGBA = tuple[float, float, float, float]

# Light colours an attacker would match to a light page, dark ones for dark pages; unknown names make
# the comparison unknown (never a false "same colour").
_NAMED = {
    "white": "#ffffff",
    "black": "#000000",
    "snow": "#fffafa",
    "ivory": "#fffff0",
    "ghostwhite": "#f8f8ff",
    "whitesmoke": "#f5f5f5",
    "floralwhite": "#fffaf0",
    "linen": "#faf0e6",
    "seashell": "#fff5ee",
    "mintcream": "#f5fffa",
    "azure": "#f0ffff",
    "aliceblue": "#f0f8ff",
    "honeydew": "#f0fff0",
    "beige": "#f5f5dc",
    "oldlace": "#fdf5e6",
    "lavenderblush": "#fff0f5",
    "cornsilk": "#fff8dc",
    "lightyellow": "#ffffe0",
    "gainsboro": "#dcdcdc",
    "lightgray": "#d3d3d3",
    "lightgrey": "#d3d3d3",
    "silver": "#c0c0c0",
    "gray": "#808080",
    "grey": "#808080",
    "dimgray": "#696969",
    "red": "#ff0000",
    "green": "#008000",
    "blue": "#0000ff",
    "yellow": "#ffff00",
    "maroon": "#800000",
    "navy": "#000080",
    "purple": "#800080",
    "teal": "#008080",
    "olive": "#808000",
    "lime": "#00ff00",
    "aqua": "#00ffff",
    "fuchsia": "#ff00ff",
    "orange": "#ffa500",
}
_FUNC = re.compile(r"(rgba?|hsla?)\(([^)]*)\)")


def _hsl_to_rgb(h: float, s: float, lum: float) -> tuple[float, float, float]:
    c = (1 - abs(2 * lum - 1)) * s
    x = c * (1 - abs((h / 60) % 2 - 1))
    m = lum - c / 2
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h % 360 // 60)]
    return (r + m) * 255, (g + m) * 255, (b + m) * 255


def _parse_color(value: str) -> RGBA | None:
    v = value.strip().lower()
    if v == "transparent":
        return (0.0, 0.0, 0.0, 0.0)
    v = _NAMED.get(v, v)
    if v.startswith("#"):
        h = v[1:]
        if len(h) in (3, 4):
            h = "".join(ch * 2 for ch in h)
        if len(h) in (6, 8):
            try:
                nums = [int(h[i : i + 2], 16) for i in range(0, len(h), 2)]
            except ValueError:
                return None
            return (nums[0], nums[1], nums[2], nums[3] / 255 if len(nums) == 4 else 1.0)
        return None
    m = _FUNC.match(v)
    if not m:
        return None
    parts = [p for p in re.split(r"[\s,/]+", m.group(2).strip()) if p]
    try:
        if m.group(1).startswith("rgb") and len(parts) >= 3:
            rgb = [float(p[:-1]) * 2.55 if p.endswith("%") else float(p) for p in parts[:3]]
            a = parts[3] if len(parts) > 3 else "1"
            alpha = float(a[:-1]) / 100 if a.endswith("%") else float(a)
            return (rgb[0], rgb[1], rgb[2], alpha)
        if m.group(1).startswith("hsl") and len(parts) >= 3:
            hue = float(parts[0].rstrip("deg"))
            r, g, b = _hsl_to_rgb(hue, float(parts[1].rstrip("%")) / 100, float(parts[2].rstrip("%")) / 100)
            a = parts[3] if len(parts) > 3 else "1"
            alpha = float(a[:-1]) / 100 if a.endswith("%") else float(a)
            return (r, g, b, alpha)
    except (ValueError, IndexError):
        return None
    return None


def _luminance(c: RGBA) -> float:
    def lin(x: float) -> float:
        x = x / 255
        return x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])


# WCAG 2 contrast ratio (https://www.w3.org/TR/WCAG21/#dfn-contrast-ratio): 1.0 for identical colours,
# 4.5 is the minimum for body text. Below 1.2 (e.g. #eeeeee on white is 1.16) nobody reads it.
_INVISIBLE_CONTRAST = 1.2


@functools.lru_cache(maxsize=1024)
def _invisible_on(color: RGBA, backdrop: RGBA) -> bool:
    if color[3] <= 0.05:
        return True
    hi, lo = sorted((_luminance(color), _luminance(backdrop)), reverse=True)
    return (hi + 0.05) / (lo + 0.05) < _INVISIBLE_CONTRAST


_WHITE: RGBA = (255.0, 255.0, 255.0, 1.0)
_BLACK: RGBA = (0.0, 0.0, 0.0, 1.0)


def _background(decls: dict[str, str], attr_bg: str | None) -> tuple[bool, RGBA | None]:
    """(sets a backdrop?, colour or None when it cannot be known, e.g. an image)."""
    if "background-image" in decls and decls["background-image"] != "none":
        return True, None
    value = decls.get("background-color") or decls.get("background")
    if value is None:
        if attr_bg:
            c = _parse_color(attr_bg)
            return (True, c) if c is None or c[3] > 0 else (False, None)
        return False, None
    if "url(" in value or "gradient(" in value:
        return True, None
    for token in re.findall(r"#[0-9a-f]+|(?:rgb|hsl)a?\([^)]*\)|[a-z]+", value):
        c = _parse_color(token)
        if c is not None:
            return (c[3] > 0, c if c[3] > 0 else None)
    return False, None


# ----------------------------------------------------------------------------------------------
# The walk
# ----------------------------------------------------------------------------------------------

# Not text at all (code, templates) or content shown only when the element is unsupported. <title>
# is read separately; the rest of <head> is walked for comments and <noscript>.
_SKIP = frozenset({"script", "style", "template", "title", "iframe", "object", "canvas"})
# Block elements: a line of their own; the paragraph-level ones also get a blank line around them.
_PARAGRAPH = frozenset(
    "p h1 h2 h3 h4 h5 h6 blockquote pre ul ol dl table section article header footer figure hr "
    "details fieldset main aside nav form address".split()
)
_LINE = frozenset("div li dt dd tr caption figcaption summary option legend center body html".split())
# Elements that may hide their content without any attribute (details, noscript) or change how
# their content is read (pre, textarea, nav, menu, summary).
_SPECIAL = frozenset({"details", "noscript", "svg", "pre", "textarea", "nav", "menu", "summary"})
_ATTR_CHANNELS = (("alt", "alt"), ("title", "title_attr"), ("aria-label", "aria_label"))
# Screen-reader-only text and skip links (Bootstrap, WordPress, Drupal, Foundation, HTML5 Boilerplate,
# GOV.UK): hidden from sight on purpose, read aloud to blind readers.
_SR_CLASSES = frozenset(
    "sr-only sr_only visually-hidden visuallyhidden screen-reader-text screen-reader-only screenreader "
    "screenreader-only a11y-hidden element-invisible show-for-sr assistive-text hidden-visually "
    "u-visually-hidden govuk-visually-hidden skip-link skip-to-content skiplink skip-nav skip".split()
)
# Utility classes that mean display:none in the common CSS frameworks (Bootstrap, Tailwind, Foundation,
# Bulma); the stylesheet that says so is external, so the class name is our only evidence.
_HIDDEN_CLASSES = frozenset("hidden d-none hide is-hidden invisible u-hidden display-none".split())
_MENU_WORDS = ("menu", "dropdown", "submenu", "collapse", "navbar", "nav", "accordion", "flyout")
_MENU_ROLES = frozenset({"menu", "menubar", "navigation", "listbox", "tabpanel"})
_MENU_CHANNELS = frozenset({"display_none", "hidden_attr", "style_rule", "hidden_class", "zero_size"})
_MENU_LINK_SHARE = 0.6  # a collapsed block is a menu if at least this share of its text is link text
# <meta> names that carry text a model might read; technical ones (viewport, robots ...) are skipped.
_META_TECHNICAL = frozenset(
    "viewport robots googlebot generator theme-color referrer format-detection color-scheme csrf-token "
    "csrf-param google-site-verification msvalidate.01 apple-mobile-web-app-capable handheldfriendly "
    "mobileoptimized og:image og:url og:type og:locale og:site_name twitter:card twitter:image "
    "twitter:site fb:app_id".split()
)
_BLOCK_TAGS = _PARAGRAPH | _LINE | {"td", "th"}
_HIDING_ATTRS = frozenset({"style", "hidden", "aria-hidden", "bgcolor", "color", "text", "open"})
_FLAG_CLASSES = _SR_CLASSES | _HIDDEN_CLASSES
_WS = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


@dataclass(slots=True)
class _State:
    region: int | None = None  # index of the hidden span this element's text goes to (None: visible)
    hard: bool = False  # hidden in a way no descendant can undo (display:none, hidden ...)
    soft_channel: str | None = None  # visibility_hidden / same_color: a descendant may undo it
    vis_hidden: bool = False  # `visibility` inherits, and `visible` on a child shows it again
    tiny_font: bool = False  # font-size:0 inherits too; a child's absolute size undoes it (a layout trick)
    color: RGBA | None = _BLACK
    backdrop: RGBA | None = _WHITE
    pre: bool = False
    in_menu: bool = False
    open_details: bool = True  # False inside a closed <details> (its <summary> stays visible)


def _apply_soft(st: _State, tag: str, attrs: Any, merged: dict[str, str]) -> None:
    """Visibility, font size and colours of an element's declarations, onto its (fresh) state."""
    if "visibility" in merged:
        st.vis_hidden = merged["visibility"] in ("hidden", "collapse")
    size = _font_size(merged)
    if size is not None:
        px = _length_px(size)
        if px is not None and px <= 1.0:
            st.tiny_font = True
        elif not (st.tiny_font and size.endswith(("em", "%", "ex", "ch")) and not size.endswith("rem")):
            st.tiny_font = False  # an absolute size (px, rem, keywords) shows the text again
    color_value = merged.get("color") or (attrs.get("color") if tag == "font" else None)
    if color_value and color_value not in ("inherit", "currentcolor", "unset"):
        st.color = _BLACK if color_value == "initial" else _parse_color(color_value)
    sets_bg, bg = _background(merged, attrs.get("bgcolor"))
    if sets_bg:
        st.backdrop = bg
    if tag == "body" and "text" in attrs:
        st.color = _parse_color(attrs["text"])


def _soft_channel(
    st: _State, merged: dict[str, str], ruled: dict[str, str], inline: dict[str, str]
) -> str | None:
    """The soft channel an element's state hides text with (a style rule when a rule, not the
    element's own style, did it), or None."""
    if st.vis_hidden:
        return "style_rule" if "visibility" in ruled and "visibility" not in inline else "visibility_hidden"
    if st.tiny_font:
        from_rule = _font_size(merged) is not None and _font_size(inline) is None
        return "style_rule" if from_rule else "font_size_0"
    if st.color is not None and st.backdrop is not None and _invisible_on(st.color, st.backdrop):
        return "same_color"
    return None


class _Walker:
    def __init__(self, sheet: _StyleSheet) -> None:
        self.sheet = sheet
        self.has_rules = bool(sheet)
        self.parts: list[str] = []
        self.pending = 0  # newlines owed before the next visible text
        self.trailing_space = True  # the visible text so far ends in whitespace (or is empty)
        self.regions: list[tuple[str, list[str]]] = []

    # -- output --
    def visible(self, text: str, pre: bool) -> None:
        if not pre:
            words = text.split()
            if not words:
                if not self.trailing_space:
                    self.parts.append(" ")
                    self.trailing_space = True
                return
            lead = text[0].isspace() and not (self.trailing_space or self.pending)
            text = (" " if lead else "") + " ".join(words) + (" " if text[-1].isspace() else "")
        elif not text:
            return
        if self.pending:
            if self.parts:  # (a <pre> may end in a newline of its own)
                self.parts[-1] = self.parts[-1].rstrip(" \n")
                self.parts.append("\n" * self.pending)
            self.pending = 0
        self.parts.append(text)
        self.trailing_space = text[-1].isspace()

    def block(self, newlines: int) -> None:
        if newlines > self.pending:
            self.pending = newlines

    def new_region(self, channel: str) -> int:
        self.regions.append((channel, []))
        return len(self.regions) - 1

    def span(self, channel: str, text: str | None) -> None:
        if text and not text.isspace():
            self.regions.append((channel, [text]))

    def emit(self, text: str | None, st: _State) -> None:
        if not text:
            return
        if st.region is None:
            self.visible(text, st.pre)
        else:
            self.regions[st.region][1].append(text)

    # -- per element --
    def child_state(self, el: etree._Element, tag: str, parent: _State) -> _State:
        """The element's state; the parent's own object when nothing changes (states are never
        mutated once made, except a fresh <summary>'s, made here because the tag is special)."""
        attrs = el.attrib
        special = tag in _SPECIAL
        if self._inherits_unchanged(attrs, tag, special, parent):
            return parent
        class_attr = attrs.get("class")
        # Class selectors are case-sensitive in CSS; pages that rely on that are rare enough.
        classes = class_attr.lower().split() if class_attr else []
        el_id = attrs.get("id")
        inline = _declarations(attrs["style"]) if "style" in attrs else {}
        ruled = self.sheet.match(tag, el_id, classes) if self.has_rules else {}
        if not parent.hard:
            hard = self._hard_state(el, tag, attrs, classes, inline, ruled, parent)
            if hard is not None:
                return hard
        # Soft channels: visibility and colour inherit, and a descendant can undo them.
        merged = {**ruled, **inline} if ruled else inline
        if not merged and tag not in ("font", "body") and "bgcolor" not in attrs:
            return self._copy(parent, tag) if special else parent
        st = self._copy(parent, tag)
        if st.hard:
            return st
        _apply_soft(st, tag, attrs, merged)
        soft = _soft_channel(st, merged, ruled, inline)
        if soft != parent.soft_channel or (soft is not None and parent.region is None):
            st.soft_channel = soft
            st.region = self.new_region(soft) if soft is not None else None
        return st

    def _inherits_unchanged(self, attrs: Any, tag: str, special: bool, parent: _State) -> bool:
        """Whether the element certainly has its parent's state (the fast path)."""
        if not attrs and not special and not (self.has_rules and tag in self.sheet.by_tag):
            return True
        if parent.hard and tag != "summary":
            return True  # nothing inside display:none & co. can show again
        if not special and not self.has_rules and _HIDING_ATTRS.isdisjoint(attrs.keys()):
            # The common case (class, href, id ...): only some class names can matter.
            class_attr = attrs.get("class")
            return not class_attr or _FLAG_CLASSES.isdisjoint(class_attr.lower().split())
        return False

    def _hard_state(
        self,
        el: etree._Element,
        tag: str,
        attrs: Any,
        classes: list[str],
        inline: dict[str, str],
        ruled: dict[str, str],
        parent: _State,
    ) -> _State | None:
        """The state of an element that hides its whole subtree, or None."""
        channel = self._hard_channel(tag, attrs, classes, inline, ruled)
        if channel is not None:
            if channel in _MENU_CHANNELS and self._looks_like_menu(el, attrs, classes, parent):
                channel = "legit_collapsed"
            st = self._copy(parent, tag)
            st.region = self.new_region(channel)
            st.hard = True
            st.soft_channel = None
            return st
        if tag == "details" and "open" not in attrs:
            st = self._copy(parent, tag)
            st.region = self.new_region("legit_collapsed")
            st.hard = True
            st.open_details = False
            return st
        return None

    @staticmethod
    def _copy(parent: _State, tag: str) -> _State:
        return _State(
            parent.region,
            parent.hard,
            parent.soft_channel,
            parent.vis_hidden,
            parent.tiny_font,
            parent.color,
            parent.backdrop,
            parent.pre or tag in ("pre", "textarea"),
            parent.in_menu or tag in ("nav", "menu"),
            True,
        )

    def _hard_channel(
        self,
        tag: str,
        attrs: etree._Attrib,
        classes: list[str],
        inline: dict[str, str],
        ruled: dict[str, str],
    ) -> str | None:
        inline_channel = _hiding_property(inline) if inline else None
        if inline_channel in _SOFT_CHANNELS:
            inline_channel = None  # handled with inheritance in child_state
        if (
            classes
            and inline_channel in (None, "offscreen", "zero_size", "font_size_0")
            and not (_SR_CLASSES.isdisjoint(classes))
        ):
            # An sr-only element hidden with display:none is not read aloud either: not legitimate.
            return "legit_sr_only"
        if inline_channel is not None:
            return inline_channel
        if "hidden" in attrs:
            return "legit_collapsed" if attrs["hidden"] == "until-found" else "hidden_attr"
        if attrs.get("aria-hidden", "").lower() == "true":
            return "aria_hidden"
        if ruled:
            rule_channel = _hiding_property({k: v for k, v in ruled.items() if k not in inline})
            if rule_channel is not None and rule_channel not in _SOFT_CHANNELS:
                return "style_rule"
        if tag == "noscript":
            return "noscript"
        if tag == "svg":
            return "svg"  # labels, <title> and <desc> of inline graphics: rarely prose a reader sees
        if (
            classes
            and not _HIDDEN_CLASSES.isdisjoint(classes)
            and not any(":" in c or c.startswith(("d-sm-", "d-md-", "d-lg-", "d-xl-")) for c in classes)
        ):
            return "hidden_class"
        return None

    def _looks_like_menu(
        self, el: etree._Element, attrs: etree._Attrib, classes: list[str], st: _State
    ) -> bool:
        """A hidden block that is a collapsed menu: in a <nav> (or named/roled like a menu) and made
        mostly of links. Prose hidden in a nav is not a menu."""
        menu_like = (
            st.in_menu
            or attrs.get("role", "") in _MENU_ROLES
            or any(w in c for c in classes for w in _MENU_WORDS)
        )
        if not menu_like:
            return False
        total = len(_norm("".join(el.itertext())))
        if total == 0:
            return True
        links = sum(len(_norm("".join(a.itertext()))) for a in el.iter("a"))
        return links >= _MENU_LINK_SHARE * total

    def attributes(self, el: etree._Element) -> None:
        attrs = el.attrib
        if not attrs:
            return
        for name, channel in _ATTR_CHANNELS:
            value = attrs.get(name)
            if value:
                self.span(channel, _norm(value))

    def walk(self, root: etree._Element) -> None:
        # Explicit stack: pages nest deeper than Python's recursion limit more often than one hopes.
        # Entries: (element, its state or None when entering, state its tail belongs to).
        stack: list[tuple[etree._Element, _State | None, _State]] = [(root, None, _State())]
        pop, push = stack.pop, stack.append
        leave, enter = self._leave, self._enter
        while stack:
            el, st, parent = pop()
            if st is not None:
                leave(el, st, parent)
            else:
                enter(el, parent, push)

    def _leave(self, el: etree._Element, st: _State, parent: _State) -> None:
        if st.region is None:
            if el.tag in _BLOCK_TAGS:  # hidden elements make no box: no line breaks
                self._open_block(el.tag)
        else:
            self.regions[st.region][1].append(" ")
        if el.tail:
            self.emit(el.tail, parent)

    def _enter(self, el: etree._Element, parent: _State, push: Callable[[Any], None]) -> None:
        tag = el.tag  # libxml2's HTML parser gives lower-case names
        if not isinstance(tag, str):
            self._other_node(el, parent)
            return
        if tag in _SKIP:
            if el.tail:
                self.emit(el.tail, parent)
            return
        st = self.child_state(el, tag, parent)
        if tag == "summary" and not parent.open_details:
            # The summary of a closed <details> is what the reader clicks: visible.
            st.region = None
            st.hard = False
        if el.attrib:
            self.attributes(el)
        if tag == "br":
            self._line_break(el, st, parent)
            return
        if st.region is None:
            if tag in _BLOCK_TAGS:
                self._open_block(tag)
        else:
            self.regions[st.region][1].append(" ")
        if el.text:
            self.emit(el.text, st)
        push((el, st, parent))
        for child in reversed(el):
            push((child, None, st))

    def _other_node(self, el: etree._Element, parent: _State) -> None:
        """A comment (kept as a hidden `comment` span unless it is a conditional comment) or a
        processing instruction; then its tail."""
        if el.tag is etree.Comment:
            text = el.text or ""
            if not text.lstrip().startswith(("[if", "<![endif]")):
                self.span("comment", _norm(text))
        if el.tail:
            self.emit(el.tail, parent)

    def _line_break(self, el: etree._Element, st: _State, parent: _State) -> None:
        if st.region is None:
            self.block(1) if not st.pre else self.visible("\n", True)
        if el.tail:
            self.emit(el.tail, parent)

    def _open_block(self, tag: str) -> None:
        if tag in _PARAGRAPH:
            self.block(2)
        elif tag in _LINE:
            self.block(1)
        elif tag in ("td", "th") and not self.trailing_space:
            self.parts.append(" ")
            self.trailing_space = True

    def text(self) -> str:
        return "".join(self.parts).strip()

    def hidden(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for channel, pieces in self.regions:
            text = _norm("".join(pieces))
            # The same span many times over (an icon's label on every row) is one signal.
            if text and (channel, text) not in seen:
                seen.add((channel, text))
                out.append((channel, text))
        return out


def _meta_spans(head_like: Iterator[etree._Element]) -> list[tuple[str, str]]:
    spans: list[tuple[str, str]] = []
    for meta in head_like:
        name = (meta.get("name") or meta.get("property") or "").strip().lower()
        content = meta.get("content")
        if not name or not content or name in _META_TECHNICAL or name.startswith(("msapplication", "apple-")):
            continue
        text = _norm(content)
        if text:
            spans.append(("meta", text))
    return spans


_COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
_TAG_OR_COMMENT = re.compile(r"<!--.*?-->|<(script|style)\b.*?</\1\s*>|<[^>]*>", re.DOTALL | re.IGNORECASE)


def _strip_tags(html: str) -> str:
    return _norm(html_lib.unescape(_TAG_OR_COMMENT.sub(" ", html)))


_LOCAL = threading.local()


def _parser() -> etree.HTMLParser:
    # A parser must not be shared between threads, and is worth keeping: one per thread.
    parser: etree.HTMLParser | None = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = etree.HTMLParser(
            encoding="utf-8",
            remove_comments=False,
            remove_pis=True,
            no_network=True,
            recover=True,
            huge_tree=True,
            default_doctype=False,
        )
        _LOCAL.parser = parser
    return parser


def extract(html: str | bytes, content_type: str | None = None) -> Extracted:
    """Visible text, hidden spans, title and encoding of one HTML page.

    ``html`` as bytes is decoded with :func:`decode_html` (``content_type`` is the HTTP header, if
    any); as str it is used as is and ``encoding`` is ``"unicode"``.
    """
    if isinstance(html, bytes):
        text, encoding = decode_html(html, content_type)
    else:
        text, encoding = html, "unicode"
    # Hand libxml2 UTF-8 bytes with the encoding fixed, so a stale <meta charset> in an already
    # decoded page cannot make it decode twice (and lxml refuses str with an XML declaration).
    data = text.encode("utf-8", errors="replace")
    parser = _parser()
    try:
        root = etree.fromstring(data, parser) if data.strip() else None
    except etree.XMLSyntaxError:
        root = None
    if root is not None and any(e.type_name == "ERR_RESOURCE_LIMIT" for e in parser.error_log):
        root = None  # libxml2 stopped part-way: what it returns is a truncated page
    if root is None:
        if not data.strip():
            return Extracted("", [], None, encoding)
        # libxml2 gives up on some pages (nesting deeper than 2048, even with huge_tree). Rather than
        # lose the page, keep all of its text as visible: the detectors on visible text still see it.
        comments = [("comment", c) for c in (_norm(m) for m in _COMMENT.findall(text)) if c]
        return Extracted(_strip_tags(text), comments, None, encoding)

    css = [s.text for s in root.iter("style") if s.text]
    rules: list[_Rule] = []
    for block in css:
        rules.extend(parse_style_rules(block, start_order=len(rules)))
    walker = _Walker(_StyleSheet(rules))

    title_el = root.find("head/title")  # not an SVG's <title> in the body
    title = _norm("".join(title_el.itertext())) if title_el is not None else None
    for comment in reversed(list(root.itersiblings(etree.Comment, preceding=True))):
        walker.span("comment", _norm(comment.text or ""))
    walker.regions.extend((channel, [t]) for channel, t in _meta_spans(root.iter("meta")))
    walker.walk(root)
    for comment in root.itersiblings(etree.Comment):
        walker.span("comment", _norm(comment.text or ""))
    return Extracted(walker.text(), walker.hidden(), title or None, encoding)

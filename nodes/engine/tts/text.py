"""Text as a TTS engine should receive it: cleaned, bounded, checked and cut at sentence boundaries.

Why each step exists:
- Control characters (a NUL pasted from a PDF, a bell, zero-width joiners) make espeak-ng read
  out code names or stop early, and some HTTP services answer 400. They are removed, and the
  node says how many.
- Markup (HTML/SSML tags pasted from a CMS) would be read aloud ("less than b greater than").
  Tags are removed, the words between them kept; <script>/<style> bodies are dropped whole.
- A limit on characters refuses a 100,000-character paste at once, before minutes of synthesis;
  the synthesiser also stops as soon as the speech passes the maximum clip length.
- Sentences are the unit of synthesis: they are what a service synthesises best, what can run
  a few at once, and what the cache reuses (a greeting is a sentence).
"""

from __future__ import annotations

import html
import os
import re
import unicodedata

from ..errors import SonicInputError

DEFAULT_MAX_CHARS = 20_000  # about 20-25 minutes of speech at a normal pace; the clip limit is 10 min
MAX_CHUNK_CHARS = 300  # a sentence longer than this is cut at a clause, then at a space

_BLOCK_ELEMENTS = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(
    r"</?[A-Za-z][A-Za-z0-9:_-]*(\s[^<>]*)?/?>|<!--.*?-->|<\?.*?\?>|<!\[CDATA\[|\]\]>", re.DOTALL
)
# A sentence ends at . ! ? ; or an ellipsis (with any closing quotes or brackets) before a space,
# or at a CJK full stop / exclamation / question mark, which needs no space after it.
_SENTENCE_END = re.compile(
    r"[.!?;\u2026\u3002\uff01\uff1f\uff1b][\"'\u201d\u2019)\]]*(?:\s+|$)|[\u3002\uff01\uff1f]"
)
_CLAUSE_END = re.compile(r"(?<=[,:\u2013\u2014\uff0c\u3001])\s+")
_SPACES = re.compile(r"[ \t\u00a0]+")


def max_chars() -> int:
    """The longest text accepted (SONIC_TTS_MAX_CHARS overrides the default)."""
    raw = os.environ.get("SONIC_TTS_MAX_CHARS", "")
    try:
        value = int(raw) if raw else DEFAULT_MAX_CHARS
    except ValueError:
        value = DEFAULT_MAX_CHARS
    return value if value > 0 else DEFAULT_MAX_CHARS


def clean_text(text: str, input_name: str = "text") -> tuple[str, list[str]]:
    """(speakable text, notes): control characters and markup removed, whitespace tidied.

    Raises SonicInputError for text that is not a string, is too long, or has nothing to speak.
    """
    if not isinstance(text, str):
        raise SonicInputError(
            input_name, f"expected text, got a {type(text).__name__}", "give the words to speak"
        )
    limit = max_chars()
    if len(text) > limit:
        raise SonicInputError(
            input_name,
            f"the text is too long ({len(text):,} characters; the limit is {limit:,})",
            "split it into several jobs (or raise SONIC_TTS_MAX_CHARS)",
        )
    notes: list[str] = []
    without_markup = _strip_markup(text)
    if without_markup != text:
        notes.append("markup tags were removed from the text (only the words are spoken)")
    kept, removed = [], 0
    for ch in without_markup:
        category = unicodedata.category(ch)
        if ch in "\n\r\t" or category not in ("Cc", "Cf", "Cs", "Co", "Cn"):
            kept.append(ch)
        else:
            removed += 1
    if removed:
        notes.append(f"{removed} control character(s) were removed from the text")
    lines = [_SPACES.sub(" ", line).strip() for line in "".join(kept).replace("\r", "\n").split("\n")]
    cleaned = "\n".join(line for line in lines if line)
    if not any(unicodedata.category(ch)[0] in "LN" for ch in cleaned):
        what = "empty" if not text.strip() else "nothing but punctuation, symbols or markup"
        raise SonicInputError(input_name, f"the text is {what}", "type the words the portrait should say")
    return cleaned, notes


def _strip_markup(text: str) -> str:
    if "<" not in text and "&" not in text:
        return text
    stripped = _TAG.sub(" ", _BLOCK_ELEMENTS.sub(" ", text)) if "<" in text else text
    return html.unescape(stripped) if "&" in stripped else stripped


def split_sentences(text: str, max_chunk: int = MAX_CHUNK_CHARS) -> list[str]:
    """The text in speaking order, one sentence per item (long ones cut at clauses, then spaces)."""
    chunks: list[str] = []
    for paragraph in text.split("\n"):
        start = 0
        for end in [m.end() for m in _SENTENCE_END.finditer(paragraph)] + [len(paragraph)]:
            sentence = paragraph[start:end].strip()
            start = end
            if sentence:
                chunks += _cut(sentence, max_chunk)
    return [c for c in chunks if any(unicodedata.category(ch)[0] in "LN" for ch in c)]


def _cut(sentence: str, max_chunk: int) -> list[str]:
    if len(sentence) <= max_chunk:
        return [sentence]
    out: list[str] = []
    current = ""
    for clause in _CLAUSE_END.split(sentence):
        pieces = [clause] if len(clause) <= max_chunk else _by_words(clause, max_chunk)
        for piece in pieces:
            if current and len(current) + 1 + len(piece) > max_chunk:
                out.append(current)
                current = piece
            else:
                current = f"{current} {piece}" if current else piece
    if current:
        out.append(current)
    return out


def _by_words(text: str, max_chunk: int) -> list[str]:
    out, current = [], ""
    for word in text.split(" "):
        while len(word) > max_chunk:  # one unbroken run (a URL, CJK text without spaces)
            if current:
                out.append(current)
                current = ""
            out.append(word[:max_chunk])
            word = word[max_chunk:]
        if current and len(current) + 1 + len(word) > max_chunk:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        out.append(current)
    return out


# ---------------------------------------------------------------- scripts (writing systems)
# Unicode character names start with their script ("CYRILLIC SMALL LETTER A", "CJK UNIFIED
# IDEOGRAPH-4F60"); a voice reads the scripts of its language, and every voice reads Latin
# (as its own language or, for the others, by switching to English).
_NAME_SCRIPTS = {"CJK": "Han", "HIRAGANA": "Kana", "KATAKANA": "Kana"}


def script_of(ch: str) -> str | None:
    """The writing system of a letter ("Latin", "Cyrillic", "Han", ...); None for non-letters."""
    if unicodedata.category(ch)[0] != "L":
        return None
    try:
        words = unicodedata.name(ch).split(" ")
    except ValueError:
        return None
    first = words[1] if words[0] in ("FULLWIDTH", "HALFWIDTH") and len(words) > 1 else words[0]
    return _NAME_SCRIPTS.get(first, first.capitalize())


def scripts_used(text: str) -> dict[str, int]:
    """How many letters of each script the text has."""
    counts: dict[str, int] = {}
    for ch in text:
        script = script_of(ch)
        if script:
            counts[script] = counts.get(script, 0) + 1
    return counts

"""Prompt lists: the sentences a synthetic (flite) corpus is rendered from.

Two formats are read:

* our plain list (``voiceconv/data/prompts.txt``, shipped with the package): one
  sentence per line, blank lines and ``#`` comments ignored; ids are given in
  order as ``vc_0001``, ``vc_0002``, ... (counting sentences, not lines, so a
  comment does not shift the ids);
* a Festival prompt file such as CMU ARCTIC's ``arctic_a.data`` or
  ``etc/txt.done.data``: one ``( id "text" )`` per line.

The format is chosen from the first non-blank, non-comment line: one that starts
with ``(`` makes the whole file a Festival file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from voiceconv.errors import CorpusError

#: The prompt list shipped with voiceconv (original sentences written for the project).
DEFAULT_PROMPTS = Path(__file__).with_name("prompts.txt")

#: Prefix and zero-padded width of the ids given to plain-list sentences.
PLAIN_ID_PREFIX = "vc_"
PLAIN_ID_WIDTH = 4

_FESTIVAL_LINE = re.compile(r'^\(\s*(?P<id>[^\s"()]+)\s+"(?P<text>.*)"\s*\)$')


def parse_festival_line(line: str) -> tuple[str, str] | None:
    """Parse one Festival prompt line ``( id "text" )`` into ``(id, text)``.

    Returns ``None`` for a line that is not in that form. Backslash-escaped quotes
    inside the text (``\\"``) are unescaped.
    """
    m = _FESTIVAL_LINE.match(line.strip())
    if m is None:
        return None
    text = m.group("text").replace('\\"', '"').strip()
    return m.group("id"), text


def _is_skipped(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#")


def load_prompts(path: str | os.PathLike[str] | None = None) -> list[tuple[str, str]]:
    """Read a prompt list and return ``[(id, text), ...]`` in file order.

    ``path=None`` reads the list shipped with voiceconv. Raises
    :class:`~voiceconv.errors.CorpusError` (one line naming the file) for a missing
    or unreadable file, an empty list, a malformed Festival line, an empty text or
    a repeated id.
    """
    src = Path(path) if path is not None else DEFAULT_PROMPTS
    try:
        raw = src.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(src, "prompt list not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CorpusError(
            src, f"cannot read prompt list ({err.__class__.__name__}: {err})"
        ) from None

    numbered = [
        (n, line) for n, line in enumerate(raw.splitlines(), start=1) if not _is_skipped(line)
    ]
    if not numbered:
        raise CorpusError(src, "prompt list is empty")

    festival = numbered[0][1].lstrip().startswith("(")
    prompts: list[tuple[str, str]] = []
    for index, (lineno, line) in enumerate(numbered, start=1):
        if festival:
            parsed = parse_festival_line(line)
            if parsed is None:
                raise CorpusError(src, f'line {lineno}: not a Festival prompt line ( id "text" )')
            uid, text = parsed
        else:
            uid, text = f"{PLAIN_ID_PREFIX}{index:0{PLAIN_ID_WIDTH}d}", " ".join(line.split())
        if not text:
            raise CorpusError(src, f"line {lineno}: empty prompt text")
        prompts.append((uid, text))

    seen: set[str] = set()
    for uid, _ in prompts:
        if uid in seen:
            raise CorpusError(src, f"prompt id {uid!r} appears more than once")
        seen.add(uid)
    return prompts

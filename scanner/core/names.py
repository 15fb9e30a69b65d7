"""The characters a holder name on a pass may hold: one fixed, explicit set.

A pass prints its holder's name for a guard to compare with a face and an ID,
and every reader must agree on which names are well formed, whatever its
Unicode library. ``str.isprintable`` does not do: its answer changes with the
Unicode version. So the set is a literal table of code point ranges, the same
in ``docs/pass-format.md``, and never derived from ``unicodedata`` at read time:

* ASCII letters and digits, the space, and ``& ' ( ) + , - . /``;
* letters of Latin-1, Latin Extended-A and -B and Latin Extended Additional
  (every European language written in Latin letters, and Vietnamese),
  modern Greek and Cyrillic letters, Hiragana, Katakana (with ``・`` and
  ``ー``), the CJK Unified Ideographs block and Hangul syllables.

No combining marks, no symbols, no controls, no format characters, no
compatibility look-alikes: every character of the set is a letter (general
category L, checked in the tests) except the listed ASCII punctuation and
``・``, and any string over the set is already in Unicode NFC. A name also
neither starts nor ends with a space nor holds two in a row.

Issuers bring what an organizer typed into that form (:func:`normalize_holder`:
NFC, typographic apostrophes as ``'``, runs of white space as one space) and
then check it; readers only check. Pure functions, no I/O.
"""

from __future__ import annotations

import bisect
import re
import unicodedata

__all__ = [
    "HOLDER_RANGES",
    "display_width",
    "holder_problem",
    "is_holder_char",
    "normalize_holder",
]

#: Inclusive code point ranges of the characters a holder name may hold.
HOLDER_RANGES: tuple[tuple[int, int], ...] = (
    (0x0020, 0x0020),  # space
    (0x0026, 0x0029),  # & ' ( )
    (0x002B, 0x002F),  # + , - . /
    (0x0030, 0x0039),  # 0-9
    (0x0041, 0x005A),  # A-Z
    (0x0061, 0x007A),  # a-z
    (0x00C0, 0x00D6),  # Latin-1 letters (without the multiplication sign)
    (0x00D8, 0x00F6),  # ... (without the division sign)
    (0x00F8, 0x024F),  # the rest of Latin-1, Latin Extended-A and -B
    (0x0386, 0x0386),  # Greek letters with tonos and the basic Greek alphabet
    (0x0388, 0x038A),
    (0x038C, 0x038C),
    (0x038E, 0x03A1),
    (0x03A3, 0x03CE),
    (0x0400, 0x045F),  # Cyrillic: Russian, Ukrainian, Belarusian, Serbian, Macedonian...
    (0x0490, 0x04FF),  # ... Ґ and the letters of other Cyrillic alphabets
    (0x1E00, 0x1EFF),  # Latin Extended Additional (Vietnamese, Welsh...)
    (0x3041, 0x3096),  # Hiragana letters
    (0x30A1, 0x30FC),  # Katakana letters, the middle dot and the prolonged sound mark
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xAC00, 0xD7A3),  # Hangul syllables
)

_STARTS = [start for start, _ in HOLDER_RANGES]
# The same table as one character class: a name is checked in one regex
# match on every scan; the per-character walk only finds what is wrong.
_HOLDER_TEXT = re.compile(
    "[" + "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in HOLDER_RANGES) + "]+"
)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def is_holder_char(ch: str) -> bool:
    """Whether the single character ``ch`` may appear in a holder name."""
    point = ord(ch)
    index = bisect.bisect_right(_STARTS, point) - 1
    return index >= 0 and point <= HOLDER_RANGES[index][1]


def holder_problem(name: str) -> str | None:
    """Why ``name`` is not a well-formed holder name, or None when it is.

    Checks the characters and the spaces only; the length limit in bytes
    belongs to the pass format.
    """
    if not name:
        return "the name is empty"
    if _HOLDER_TEXT.fullmatch(name) is None:
        for ch in name:
            if not is_holder_char(ch):
                return f"the character {ch!r} (U+{ord(ch):04X}) is not allowed in a name"
    if name[0] == " " or name[-1] == " ":
        return "the name starts or ends with a space"
    if "  " in name:
        return "the name holds two spaces in a row"
    return None


def normalize_holder(text: str) -> str:
    """What an organizer typed, in the form a pass carries: NFC, typographic
    apostrophes as ``'``, white space runs as one space, no outer spaces."""
    text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES)
    return " ".join(text.split())


def display_width(text: str) -> int:
    """How many terminal columns ``text`` takes: CJK and other wide
    characters two, combining marks none, the rest one."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )

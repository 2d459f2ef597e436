"""Resident ID numbers (GB 11643-1999): 6-digit address code, 8-digit birth date, 3-digit
sequence (odd = male), and an ISO 7064 MOD 11-2 check character."""

from __future__ import annotations

import datetime as dt

import numpy as np

WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
CHECK_CHARS = "10X98765432"


def check_char(first17: str) -> str:
    """The check character for the first 17 digits."""
    total = sum(int(c) * int(w) for c, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def check_chars(first17: np.ndarray) -> np.ndarray:
    """Vectorised `check_char` over an (n, 17) array of digits."""
    idx = (first17.astype(np.int64) @ WEIGHTS) % 11
    return np.array(list(CHECK_CHARS))[idx]


def is_valid(number: str) -> bool:
    """True for a well-formed 18-character ID number with a real date and a correct check."""
    if len(number) != 18 or not number[:17].isdigit() or number[17] not in "0123456789X":
        return False
    try:
        dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return check_char(number[:17]) == number[17]


# province-level codes of GB/T 2260 (the first two digits of every address code)
PROVINCES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65", "71", "81", "82",
})  # fmt: skip
EARLIEST_BIRTH = dt.date(1900, 1, 1)


def normalize(raw: str, *, today: dt.date | None = None) -> str:
    """A resident ID number as entered → its canonical 18-character form, or InvalidInput.

    Full-width digits and a lower-case x are normalised (NFKC, upper case) and surrounding
    whitespace is dropped; anything else is refused with a reason that never repeats the
    number (it is personal data and must not reach logs or error trackers): spaces inside,
    the old 15-digit form, a length other than 18, non-digits, an unknown province code, a
    birth date that does not exist or lies in the future or before 1900, a wrong check
    character.
    """
    import unicodedata

    from gridmap.errors import InvalidInput

    def bad(reason: str) -> InvalidInput:
        return InvalidInput(f"Invalid ID number: {reason}", field="id_number")

    if not isinstance(raw, str):
        raise bad("give it as text")
    number = unicodedata.normalize("NFKC", raw).strip().upper()
    if any(c.isspace() for c in number):
        raise bad("it contains spaces")
    if len(number) == 15 and number.isdigit():
        raise bad("the old 15-digit form is not accepted; give the 18-character number")
    if len(number) != 18:
        raise bad(f"it has {len(number)} characters, not 18")
    if not number[:17].isdigit() or not number[:17].isascii() or number[17] not in "0123456789X":
        raise bad("only digits, and X as the last character, are allowed")
    if number[:2] not in PROVINCES:
        raise bad("the first two digits are not a province code")
    try:
        born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise bad("the birth date in it does not exist") from None
    if not EARLIEST_BIRTH <= born <= (today or dt.date.today()):
        raise bad("the birth date in it lies in the future or before 1900")
    if check_char(number[:17]) != number[17]:
        raise bad("the check character does not match; look for a mistyped digit")
    return number


def birth_date(number: str) -> dt.date:
    """The birth date of a canonical ID number."""
    return dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))

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

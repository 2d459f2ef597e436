"""Phone numbers as grid workers enter them: mainland mobiles and landlines with area code."""

from __future__ import annotations

import re
import unicodedata

from gridmap.errors import InvalidInput

MOBILE = re.compile(r"1[3-9]\d{9}")
LANDLINE = re.compile(r"0\d{2,3}-[2-9]\d{6,7}(-\d{1,6})?")  # area code, number, optional extension


def normalize(raw: str) -> str:
    """A phone number → canonical form ("13812345678", "0551-62345678", "0551-62345678-801").

    Full-width characters are normalised; spaces, dots and brackets are dropped; a +86 / 0086
    prefix is removed. The error never repeats the number.
    """
    s = unicodedata.normalize("NFKC", raw).strip()
    s = re.sub(r"[\s.()（）]", "", s)
    s = re.sub(r"^(\+86|0086)-?", "", s)
    if MOBILE.fullmatch(s):
        return s
    if s.startswith("0") and "-" not in s and s.isdigit() and 10 <= len(s) <= 12:
        # a landline typed without its hyphen: area codes are 3 digits for 010 and 02x, else 4
        cut = 3 if s[1] in "12" else 4
        s = f"{s[:cut]}-{s[cut:]}"
    if LANDLINE.fullmatch(s):
        return s
    raise InvalidInput(
        "Invalid phone number: give a mobile number (11 digits starting with 1) or a landline "
        "with its area code, e.g. 010-87654321",
        field="phone",
    )

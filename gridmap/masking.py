"""De-identification on the server (脱敏): masked values, keyed pseudonyms, small-cell suppression.

Under the PIPL de-identified data is still personal information, so these are applied for every
role outside a grid's own staff and in every export; the API never sends the clear value to be
masked by a client.

* ID number: the birth date hidden — ``340104********123X`` (address code and last four kept).
* Phone: 3 + 4 — ``138****5678``; a landline keeps its area code and last four digits.
* Name: surname + ``*`` — ``张*``, ``欧阳*`` (compound surnames are recognised).
* Pseudonym: a stable token from a keyed HMAC-SHA256 of the value, so records of one person can
  be linked without revealing who it is; the key lives outside the database
  (``GRIDMAP_PSEUDONYM_KEY``) so that a copy of the database alone cannot reverse it.
* Counts per area below the minimum cell size (k = 5) are suppressed where they could single
  someone out, with complementary suppression where a published total would give them back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

MIN_CELL = 5  # counts below this are shown as "<5"
# the compound surnames (复姓) common enough to matter; the rest are single characters
COMPOUND_SURNAMES = frozenset({
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "夏侯", "令狐", "端木", "轩辕", "独孤", "南宫", "西门", "百里", "呼延", "澹台", "公冶", "申屠",
})  # fmt: skip


def mask_id_number(number: str | None) -> str | None:
    """The ID number with its birth date (and sequence) hidden: first 6 and last 4 kept."""
    if not number:
        return number
    if len(number) < 10:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def mask_phone(phone: str | None) -> str | None:
    """A mobile as 3 + 4 (138****5678); a landline as area code + last four (0551-****5678)."""
    if not phone:
        return phone
    if "-" in phone:
        area, rest = phone.split("-", 1)
        digits = rest.replace("-", "")
        return f"{area}-{'*' * max(len(digits) - 4, 0)}{digits[-4:]}"
    if len(phone) <= 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_name(name: str | None) -> str | None:
    """Surname and one star: 张* for 张三丰, 欧阳* for 欧阳娜娜; a Latin name keeps its first letter."""
    if not name:
        return name
    surname = name[:2] if name[:2] in COMPOUND_SURNAMES and len(name) > 2 else name[:1]
    return surname + "*"


def pseudonym(value: str, key: bytes, *, purpose: str = "resident") -> str:
    """A stable, non-reversible token for `value` under `key` (HMAC-SHA256, 20 base32 chars).

    `purpose` separates domains: the same ID number gives unrelated tokens for different uses.
    """
    if not key:
        raise ValueError("a pseudonym key is required (GRIDMAP_PSEUDONYM_KEY)")
    mac = hmac.new(key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode()[:20].lower()


def suppress_small(counts: Mapping[str, int], k: int = MIN_CELL) -> dict[str, int | str]:
    """Counts per area with every count from 1 to k-1 replaced by "<k" (0 stays 0: nobody to find)."""
    return {area: (f"<{k}" if 0 < n < k else n) for area, n in counts.items()}


COMPLEMENT = "x"  # a count withheld only so that a suppressed neighbour cannot be worked out


def suppress_groups(groups: Mapping[str, Mapping[str, int]], k: int = MIN_CELL) -> dict[str, dict[str, Any]]:
    """Counts per area, grouped under their parent area, for publication with the parents' totals.

    Primary suppression: 1 … k-1 → "<k". The published total minus the shown cells gives the sum
    of the withheld ones, so more cells are withheld (`COMPLEMENT`) until that sum is at least
    2k-1 (then no withheld cell can be pinned below k): each time the smallest cell of at least
    2k-1, else the smallest non-zero one. Group totals are treated the same way one level up (a grand
    total is published too). Returns {parent: {"total": …, "cells": {area: …}}}.
    """
    out: dict[str, dict[str, Any]] = {}
    for parent, cells in groups.items():
        shown: dict[str, Any] = suppress_small(cells, k)
        _complement(cells, shown, k)
        out[parent] = {"total": sum(cells.values()), "cells": shown}
    totals = {parent: int(g["total"]) for parent, g in out.items()}
    shown_totals: dict[str, Any] = suppress_small(totals, k)
    _complement(totals, shown_totals, k)
    for parent in out:
        out[parent]["total"] = shown_totals[parent]
    return out


def _complement(counts: Mapping[str, int], shown: dict[str, Any], k: int) -> None:
    """Withhold more cells until the withheld ones sum to at least 2k-1 (or none are left)."""
    hidden = [a for a, v in shown.items() if isinstance(v, str)]
    while hidden and sum(counts[a] for a in hidden) < 2 * k - 1:
        others = sorted((n, a) for a, n in counts.items() if not isinstance(shown[a], str) and n > 0)
        if not others:
            return
        safe = [(n, a) for n, a in others if n >= 2 * k - 1]
        pick = (safe or others)[0][1]
        shown[pick] = COMPLEMENT
        hidden.append(pick)

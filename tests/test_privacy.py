"""Personal data at the door: ID numbers and phones are normalised or refused without echoing
them; masked values, keyed pseudonyms and small-cell suppression for everyone else."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridmap import idnumber, masking, phone
from gridmap.errors import InvalidInput

TODAY = dt.date(2026, 11, 23)
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    province = draw(st.sampled_from(sorted(idnumber.PROVINCES)))
    area = draw(st.from_regex(r"[0-9]{4}", fullmatch=True))
    born = draw(st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY))
    seq = draw(st.from_regex(r"[0-9]{3}", fullmatch=True))
    first17 = f"{province}{area}{born:%Y%m%d}{seq}"
    return first17 + idnumber.check_char(first17)


def refused(fn, value: str) -> InvalidInput:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as info:
        fn(value)
    exc = info.value
    digits = "".join(c for c in value if c.isdigit())
    assert len(digits) < 6 or digits[:6] not in str(exc) and digits[-6:] not in str(exc), "the number was echoed"
    assert all(str(v) not in value for v in exc.extra.values() if len(str(v)) > 5)
    return exc


@given(id_numbers())
def test_valid_numbers_are_accepted_in_their_entered_forms(number: str) -> None:
    for entered in (number, f"  {number}\t", number.lower(), number.translate(FULL_WIDTH)):
        assert idnumber.normalize(entered, today=TODAY) == number


@given(id_numbers())
def test_a_wrong_check_character_is_refused(number: str) -> None:
    wrong = next(c for c in "0123456789X" if c != number[17])
    exc = refused(lambda v: idnumber.normalize(v, today=TODAY), number[:17] + wrong)
    assert exc.detail == "Invalid ID number: the check character does not match; look for a mistyped digit"


@pytest.mark.parametrize(
    ("entered", "reason"),
    [
        ("34010419900230123X", "the birth date in it does not exist"),  # 30 February
        ("340104" + "20300101" + "1234", "the birth date in it lies in the future or before 1900"),
        ("340104" + "18991231" + "1234", "the birth date in it lies in the future or before 1900"),
        ("990104199003071234", "the first two digits are not a province code"),
        ("340104900307123", "the old 15-digit form is not accepted; give the 18-character number"),
        ("3401041990 0307123X", "it contains spaces"),
        ("34010419900307123", "it has 17 characters, not 18"),
        ("34010419900307A23X", "only digits, and X as the last character, are allowed"),
    ],
)
def test_bad_numbers_are_refused_with_a_reason_and_without_the_number(entered: str, reason: str) -> None:
    exc = refused(lambda v: idnumber.normalize(v, today=TODAY), entered)
    assert exc.detail == f"Invalid ID number: {reason}" and exc.status == 422


@pytest.mark.parametrize(
    ("entered", "canonical"),
    [("13812345678", "13812345678"), ("+86 138-1234-5678".replace("-", " "), "13812345678"),
     ("１３８１２３４５６７８", "13812345678"), ("0551-62345678", "0551-62345678"), ("055162345678", "0551-62345678"),
     ("(010) 6234 5678", "010-62345678"), ("021-6234567-801", "021-6234567-801")],
)  # fmt: skip
def test_phones_are_normalised(entered: str, canonical: str) -> None:
    assert phone.normalize(entered) == canonical


@pytest.mark.parametrize("entered", ["12345678901", "1381234567", "138123456789", "62345678", "0551-12345678", "abc"])
def test_bad_phones_are_refused_without_the_number(entered: str) -> None:
    assert refused(phone.normalize, entered).detail.startswith("Invalid phone number: give a mobile number")


def test_masks() -> None:
    assert masking.mask_id_number("34010419900307123X") == "340104********123X"
    assert masking.mask_phone("13812345678") == "138****5678"
    assert masking.mask_phone("0551-62345678") == "0551-****5678"
    assert masking.mask_name("张三丰") == "张*" and masking.mask_name("欧阳娜娜") == "欧阳*"
    assert masking.mask_name("欧阳") == "欧*" and masking.mask_name("John") == "J*"
    assert [masking.mask_name(None), masking.mask_phone(""), masking.mask_id_number(None)] == [None, "", None]


@given(id_numbers())
def test_masked_id_numbers_hide_the_birth_date(number: str) -> None:
    masked = masking.mask_id_number(number)
    assert masked is not None and len(masked) == 18 and number[6:14] not in masked and masked[6:14] == "*" * 8


def test_pseudonyms_are_stable_keyed_and_separated_by_purpose() -> None:
    a = masking.pseudonym("34010419900307123X", b"key-1")
    assert a == masking.pseudonym("34010419900307123X", b"key-1") and len(a) == 20
    assert a != masking.pseudonym("34010419900307123X", b"key-2")
    assert a != masking.pseudonym("34010419900307123X", b"key-1", purpose="export")
    with pytest.raises(ValueError):
        masking.pseudonym("x", b"")


def test_small_counts_are_suppressed() -> None:
    assert masking.suppress_small({"a": 0, "b": 1, "c": 4, "d": 5, "e": 120}) == {"a": 0, "b": "<5", "c": "<5", "d": 5, "e": 120}


def test_a_lone_small_cell_gets_a_complement_and_totals_are_protected_too() -> None:
    shown = masking.suppress_groups({"c1": {"g1": 2, "g2": 30, "g3": 12, "g4": 0}, "c2": {"g5": 3, "g6": 1}})
    assert shown["c1"]["cells"] == {"g1": "<5", "g2": 30, "g3": "x", "g4": 0}  # 12: the smallest of at least 9
    assert shown["c2"]["cells"] == {"g5": "<5", "g6": "<5"} and shown["c2"]["total"] == "<5"
    # c2's total is small: the parent's total (one level up: by=community) minus c1's would give
    # it back, so c1's total is withheld as its complement
    assert shown["c1"]["total"] == "x"
    bigger = masking.suppress_groups({"c1": {"g1": 2, "g2": 30, "g3": 12}, "c3": {"g7": 50}})
    assert bigger["c1"]["total"] == 44 and bigger["c3"]["total"] == 50


@given(st.dictionaries(st.sampled_from(list("abcdefgh")),
                       st.dictionaries(st.sampled_from([f"g{i}" for i in range(8)]), st.integers(0, 40), min_size=1, max_size=8),
                       min_size=1, max_size=6))  # fmt: skip
def test_no_withheld_count_can_be_worked_out(groups: dict[str, dict[str, int]]) -> None:
    """From the shown cells, the group total and the markers alone, the sum of a group's withheld
    cells is known; it is 0 or at least 2k-1 whenever any cell is withheld, unless the group has
    nothing else to withhold — and then its total is small and itself withheld one level up."""
    k = masking.MIN_CELL
    shown = masking.suppress_groups(groups)
    for parent, cells in groups.items():
        out = shown[parent]["cells"]
        assert set(out) == set(cells)
        assert all(out[a] == cells[a] for a in cells if not isinstance(out[a], str))  # nothing shown is altered
        assert all(out[a] == f"<{k}" for a in cells if 0 < cells[a] < k)  # every small cell is withheld
        withheld = sum(cells[a] for a in cells if isinstance(out[a], str))
        if withheld and withheld < 2 * k - 1:
            assert all(isinstance(out[a], str) or cells[a] == 0 for a in cells)  # all non-zero cells withheld
            assert sum(cells.values()) < 2 * k - 1
    totals = {p: sum(c.values()) for p, c in groups.items()}
    withheld_totals = [t for p, t in totals.items() if isinstance(shown[p]["total"], str)]
    if withheld_totals and sum(withheld_totals) < 2 * k - 1:
        assert all(isinstance(shown[p]["total"], str) or totals[p] == 0 for p in totals)

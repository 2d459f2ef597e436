"""Households, residents and staff of the synthetic city (vectorised; clearly marked synthetic).

Residents carry ID numbers with a correct GB 11643 check character whose address code is the
fictional prefecture 3499xx (no real code starts so), and phone numbers of a valid form.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from gridmap import idnumber
from gridmap.demo import names
from gridmap.demo.city import City

HH_SIZE_P = np.array([0.38, 0.33, 0.18, 0.08, 0.03])  # household sizes 1..5 (mean ≈ 2.05)
PHONE_PREFIX = np.array(["133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "157", "158",
                         "159", "166", "177", "180", "181", "182", "183", "185", "186", "187", "188", "189",
                         "191", "193", "198", "199"])  # fmt: skip


def ranks_within(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2… within each run of equal values of a sorted array."""
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    start = np.r_[0, np.flatnonzero(groups[1:] != groups[:-1]) + 1]
    idx = np.arange(n)
    return idx - np.repeat(start, np.diff(np.r_[start, n]))


def phones(rng: np.random.Generator, n: int) -> np.ndarray:
    pre = PHONE_PREFIX[rng.integers(len(PHONE_PREFIX), size=n)]
    tail = rng.integers(0, 100_000_000, size=n)
    return np.char.add(pre, np.char.zfill(tail.astype(str), 8))


def households(rng: np.random.Generator, city: City, bldg_ids: np.ndarray) -> pd.DataFrame:
    b = city.buildings
    counts = b["households"]
    bidx = np.repeat(np.arange(len(counts)), counts)
    k = ranks_within(bidx)
    floors = np.maximum(b["floors"][bidx], 1)
    village = b["use"][bidx] == "village_house"
    floor = k % floors + 1
    room = k // floors + 1
    unit_no = np.where(
        village,
        np.char.add("户", (k + 1).astype(str)),
        np.char.add(np.char.add(floor.astype(str), np.char.zfill(room.astype(str), 2)), "室"),
    )
    size = rng.choice(np.arange(1, 6), size=len(bidx), p=HH_SIZE_P)
    return pd.DataFrame(
        {
            "id": np.arange(1, len(bidx) + 1),
            "building_id": bldg_ids[bidx],
            "grid_code": city.grids["code"][b["grid"][bidx]],
            "unit_no": unit_no,
            "size": size,
            "_bidx": bidx,
        }
    )


def residents(rng: np.random.Generator, city: City, hh: pd.DataFrame, bldg_ids: np.ndarray,
              district_of_grid: np.ndarray, today: dt.date) -> pd.DataFrame:  # fmt: skip
    size = hh["size"].to_numpy()
    h = np.repeat(np.arange(len(hh)), size)
    pos = ranks_within(h)
    n = len(h)
    hsize = size[h]
    # head's age: single-person households skew old (widowed elderly, young migrants)
    head_age = np.where(
        size == 1,
        np.where(rng.random(len(size)) < 0.55, rng.integers(62, 92, len(size)), rng.integers(20, 40, len(size))),
        rng.integers(26, 80, len(size)),
    )
    ha = head_age[h]
    relation = np.select(
        [pos == 0, (pos == 1) & (hsize >= 2), (pos >= 2) & (ha > 60) & (rng.random(n) < 0.3)],
        ["head", "spouse", "grandchild"],
        default="child",
    )
    relation = np.where((pos >= 2) & (ha < 45) & (rng.random(n) < 0.25), "parent", relation)
    age = np.select(
        [relation == "head", relation == "spouse", relation == "parent", relation == "grandchild"],
        [ha, np.clip(ha + rng.integers(-5, 6, n), 18, 99), np.clip(ha + rng.integers(22, 33, n), 40, 99),
         np.clip(ha - rng.integers(48, 62, n), 0, 30)],
        default=np.clip(ha - rng.integers(22, 38, n), 0, 60),
    )  # fmt: skip
    head_male = rng.random(len(size)) < 0.62
    male = np.where(relation == "head", head_male[h], np.where(relation == "spouse", ~head_male[h], rng.random(n) < 0.51))
    days = age * 365.25 + rng.uniform(0, 365, n)
    birth = (np.datetime64(today) - days.astype("timedelta64[D]")).astype("datetime64[D]")
    ymd = pd.DatetimeIndex(birth).strftime("%Y%m%d").to_numpy().astype(str)
    bidx = hh["_bidx"].to_numpy()[h]
    grid_of = city.buildings["grid"][bidx]
    region = district_of_grid[grid_of]
    # sequence numbers: unique within (address code, birth date), odd for men (GB 11643)
    key = np.char.add(region, ymd)
    order = np.lexsort((~male, key))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = ranks_within(key[order])
    seq = 2 * rank + np.where(male, 1, 2)
    seq = np.where(seq > 999, seq % 998 + 1, seq)
    first17 = np.char.add(key, np.char.zfill(seq.astype(str), 3))
    digits = np.frombuffer("".join(first17.tolist()).encode(), dtype=np.uint8).reshape(n, 17) - 48
    id_number = np.char.add(first17, idnumber.check_chars(digits))
    adult = age >= 16
    phone = np.where(adult, phones(rng, n), None)
    tags: list[list[str]] = [[] for _ in range(n)]
    rules = [
        ("elderly_alone", (hsize == 1) & (age >= 65) & (rng.random(n) < 0.85)),
        ("community_correction", adult & (age < 60) & (rng.random(n) < 0.0015)),
        ("disabled", rng.random(n) < 0.015),
        ("low_income", np.repeat(rng.random(len(size)) < 0.02, size)),
        ("left_behind_child", (age < 16) & (city.buildings["use"][bidx] == "village_house") & (rng.random(n) < 0.12)),
        ("veteran", male & (age >= 22) & (rng.random(n) < 0.012)),
        ("mental_health", adult & (rng.random(n) < 0.003)),
    ]
    for tag, mask in rules:
        for i in np.flatnonzero(mask):
            tags[i].append(tag)
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "household_id": hh["id"].to_numpy()[h],
            "building_id": bldg_ids[bidx],
            "grid_code": city.grids["code"][grid_of],
            "name": names.person_names(rng, male),
            "id_number": id_number,
            "gender": np.where(male, "M", "F"),
            "birth_date": birth.astype(str),
            "phone": phone,
            "relation": relation,
            "tags": ["{" + ",".join(t) + "}" for t in tags],
            "is_synthetic": True,
        }
    )


def staff(rng: np.random.Generator, city: City) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Staff with scopes and weekly duty rosters."""
    rows: list[tuple[str, str, str]] = []  # username, role, scope level
    scopes: list[tuple[int, str, str]] = []
    g, c, s, d = city.grids, city.communities, city.streets, city.districts

    def add(username: str, role: str, level: str, code: str) -> None:
        rows.append((username, role, level))
        scopes.append((len(rows), level, code))

    for k, code in enumerate(g["code"]):
        add(f"gw{code}a", "grid_worker", "grid", code)
        if g["households"][k] > 430:  # big grids get a part-time second worker
            add(f"gw{code}b", "grid_worker", "grid", code)
    for code in c["code"]:
        add(f"gl{code}", "grid_leader", "community", code)
        add(f"ca{code}", "community_admin", "community", code)
    for code in s["code"]:
        add(f"sa{code}", "street_admin", "street", code)
    for code in d["code"]:
        add(f"da{code}", "district_admin", "district", code)
        for n in range(3):
            add(f"dp{code}{n + 1}", "dispatcher", "district", code)
    for role, prefix, count in [("command_center", "cc", 4), ("planner", "pl", 2), ("analyst", "an", 2),
                                ("auditor", "au", 1), ("admin", "admin", 1)]:  # fmt: skip
        for n in range(count):
            add(f"{prefix}{n + 1}", role, "city", "city")
    n = len(rows)
    male = rng.random(n) < 0.55
    status = rng.choice(["on_duty", "off_duty", "leave"], size=n, p=[0.86, 0.1, 0.04])
    staff_df = pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "username": [r[0] for r in rows],
            "name": names.person_names(rng, male),
            "phone": phones(rng, n),
            "role": [r[1] for r in rows],
            "duty_status": status,
            "is_synthetic": True,
        }
    )
    scope_df = pd.DataFrame(scopes, columns=["staff_id", "level", "code"])
    roster = []
    for sid, (_, role, _) in enumerate(rows, start=1):
        if role == "dispatcher":
            shift = [("00:00", "08:00"), ("08:00", "16:00"), ("16:00", "23:59")][(sid - 1) % 3]
            roster += [(sid, wd, *shift) for wd in range(7)]
        else:
            days = range(5) if role != "grid_worker" or sid % 2 else range(6)
            roster += [(sid, wd, "08:30", "17:30") for wd in days]
    roster_df = pd.DataFrame(roster, columns=["staff_id", "weekday", "starts", "ends"])
    roster_df.insert(0, "id", np.arange(1, len(roster_df) + 1))
    return staff_df, scope_df, roster_df

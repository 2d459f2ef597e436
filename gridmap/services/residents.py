"""Residents (居民): read within the caller's scope, masked for roles that see no clear data.

Every query here runs after `access.open_scope`, so row-level security filters it a second
time: a resident outside the caller's grids does not exist for them — in lists, counts and
single reads alike (404, never 403).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap import audit, masking
from gridmap.access import Scope, cursor, page_filter, page_order, require, scope_filter
from gridmap.auth import Principal
from gridmap.errors import Conflict, Forbidden, InvalidInput, NotFound

MAX_PAGE = 500
COLUMNS = "r.id, r.household_id, r.building_id, r.grid_code, r.name, r.id_number, r.gender, r.birth_date, r.phone, r.relation, r.tags"


def _out(row: Any, clear: bool) -> dict[str, Any]:
    item = {"id": row.id, "household_id": row.household_id, "building_id": row.building_id, "grid_code": row.grid_code,
            "name": row.name, "id_number": row.id_number, "gender": row.gender,
            "birth_date": row.birth_date.isoformat() if row.birth_date else None, "phone": row.phone,
            "relation": row.relation, "tags": list(row.tags or []), "masked": not clear}  # fmt: skip
    if not clear:
        item.update(name=masking.mask_name(row.name), id_number=masking.mask_id_number(row.id_number),
                    phone=masking.mask_phone(row.phone),
                    birth_date=row.birth_date.strftime("%Y") if row.birth_date else None)  # fmt: skip
    return item


def list_residents(session: Session, principal: Principal, scope: Scope, *, grid: str | None = None,
                   name: str | None = None, id_number: str | None = None, phone: str | None = None,
                   tag: str | None = None, review: bool = False, limit: int = 100, after: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Residents in scope by grid and id, a page at a time (`after` = the `next_after` cursor of
    the previous page), optionally searched by name (part of it), ID number, phone or tag;
    `total` counts the matches on the first page (null on the pages after it).

    Searching by name, ID number or phone needs clear access: on masked data it would tell who
    is who. Totals under 5 are suppressed for masked roles.
    """
    from gridmap import idnumber, masking
    from gridmap import phone as phones
    # the service's own check of the caller's grids; row-level security checks again
    where, params = page_filter("r", scope, grid=grid, limit=limit, after=after, max_page=MAX_PAGE)
    searched = [k for k, v in (("name", name), ("id_number", id_number), ("phone", phone)) if v]
    if searched and not scope.clear:
        raise Forbidden(f"The role {principal.role} may not search residents by {', '.join(searched)}")
    if name:
        if len(name) > 32 or "\x00" in name:
            raise InvalidInput("Invalid value for parameter name: 1 to 32 characters")
        where.append("strpos(r.name, :name) > 0")
        params["name"] = name.strip()
    if id_number:
        where.append("r.id_number = :id_number")
        params["id_number"] = idnumber.normalize(id_number)
    if phone:
        where.append("r.phone = :phone")
        params["phone"] = phones.normalize(phone)
    if tag:
        where.append("r.tags @> ARRAY[CAST(:tag AS text)]")
        params["tag"] = tag.strip()[:20]
    if review:  # only reviewers learn that a number was registered twice
        require(principal, "residents.review")
        where.append("r.review IS NOT NULL")
    cond = " AND ".join(where)
    total = None
    if after is None:  # counted once, not on every page
        count_cond = " AND ".join(w for w in where if not w.startswith("(r.grid_code, r.id) >"))
        total = int(session.execute(text(f"SELECT count(*) FROM resident r WHERE {count_cond}"), params).scalar_one())
    rows = session.execute(text(f"SELECT {COLUMNS} FROM resident r WHERE {cond} ORDER BY {page_order('r')} LIMIT :limit"),
                           {**params, "limit": limit + 1}).all()  # fmt: skip
    page = rows[:limit]
    items = [_out(r, scope.clear) for r in page]
    if scope.clear and items:
        audit.record(session, principal, "read", object_type="resident", object_ids=[i["id"] for i in items],
                     grid_code=grid, detail={"fields": "all", "count": len(items), "searched_by": searched})  # fmt: skip
    shown_total = total if scope.clear or total is None else masking.suppress_small({"t": total})["t"]
    return {"items": items, "total": shown_total, "next_after": cursor(page[-1]) if len(rows) > limit else None}


def get_resident(session: Session, principal: Principal, scope: Scope, resident_id: int) -> dict[str, Any]:
    row = session.execute(text(f"SELECT {COLUMNS} FROM resident r WHERE r.id = :id"), {"id": resident_id}).first()
    if row is None or not scope.covers(row.grid_code):
        raise NotFound(f"No resident {resident_id}")
    if scope.clear:
        audit.record(session, principal, "read", object_type="resident", object_ids=[row.id], grid_code=row.grid_code)
    return _out(row, scope.clear)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------

TEXT_LIMITS = {"name": 64, "relation": 12}
MAX_TAGS, MAX_TAG = 20, 20


def _text_field(name: str, value: str | None, *, required: bool = False) -> str | None:
    value = value.strip() if isinstance(value, str) else value
    if not value:
        if required:
            raise InvalidInput(f"Missing required parameter {name}")
        return None
    if "\x00" in value or len(value) > TEXT_LIMITS[name]:
        raise InvalidInput(f"Invalid value for parameter {name}: 1 to {TEXT_LIMITS[name]} characters")
    return value


def _tags(tags: list[str] | None) -> list[str]:
    out = [t.strip() for t in tags or [] if t and t.strip()]
    if len(out) > MAX_TAGS or any(len(t) > MAX_TAG or "\x00" in t for t in out):
        raise InvalidInput(f"Invalid value for parameter tags: at most {MAX_TAGS} tags of at most {MAX_TAG} characters")
    return sorted(set(out))


def _household(session: Session, scope: Scope, household_id: int) -> Any:
    """The household if the caller may reach it; one answer for "none" and "not yours"."""
    row = session.execute(text("SELECT id, grid_code, building_id FROM household WHERE id = :id"), {"id": household_id}).first()
    if row is None or not scope.covers(row.grid_code):
        raise InvalidInput(f"Unknown household {household_id}")
    return row


def _person(id_number: str | None, gender: str | None, birth_date: Any) -> tuple[str | None, str | None, Any]:
    """ID number normalised; gender and birth date taken from it (and checked when also given)."""
    import datetime as dt

    from gridmap import idnumber

    if gender is not None and gender not in ("M", "F"):
        raise InvalidInput("Invalid value for parameter gender: M or F")
    if id_number is None:
        return None, gender, birth_date
    number = idnumber.normalize(id_number)
    born = idnumber.birth_date(number)
    sex = "M" if int(number[16]) % 2 else "F"
    if gender is not None and gender != sex:
        raise InvalidInput("Invalid value for parameter gender: it does not match the ID number")
    if birth_date is not None and (birth_date if isinstance(birth_date, dt.date) else None) != born:
        raise InvalidInput("Invalid value for parameter birth_date: it does not match the ID number")
    return number, sex, born


def create_resident(session: Session, principal: Principal, scope: Scope, *, household_id: int, name: str,
                    id_number: str | None = None, gender: str | None = None, birth_date: Any = None,
                    phone: str | None = None, relation: str | None = None, tags: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Register a resident in a household the caller may reach; the grid follows the household.

    An ID number already registered elsewhere is not refused (that would tell the caller it
    exists): the resident is stored for review and the answer is the same as for any other.
    """
    from gridmap import phone as phones

    require(principal, "residents.write")
    household = _household(session, scope, household_id)
    values = {"household": household.id, "building": household.building_id, "grid": household.grid_code,
              "name": _text_field("name", name, required=True), "relation": _text_field("relation", relation),
              "phone": phones.normalize(phone) if phone else None, "tags": _tags(tags)}  # fmt: skip
    values["id_number"], values["gender"], values["birth_date"] = _person(id_number, gender, birth_date)
    insert = text(
        "INSERT INTO resident (household_id, building_id, grid_code, name, id_number, gender, birth_date, phone, "
        "relation, tags, review) VALUES (:household, :building, :grid, :name, :id_number, :gender, :birth_date, "
        f"CAST(:phone AS varchar), :relation, :tags, :review) RETURNING {COLUMNS.replace('r.', '')}"
    )  # fmt: skip
    row = _write_person(session, principal, insert, values)
    audit.record(session, principal, "create", object_type="resident", object_ids=[row.id], grid_code=row.grid_code)
    return _out(row, True)


def _write_person(session: Session, principal: Principal, statement: Any, values: dict[str, Any]) -> Any:
    """Insert or update a resident (`statement` takes :review); an ID number registered already
    is stored for review instead of refused, and the answer is the same either way."""
    from sqlalchemy.exc import IntegrityError

    try:
        with session.begin_nested():
            return session.execute(statement, {**values, "review": None}).one()
    except IntegrityError as exc:
        if "uq_resident_id_number" not in str(exc.orig):
            raise
    row = session.execute(statement, {**values, "review": "duplicate_id_number"}).one()
    audit.record(session, principal, "duplicate_id_number", object_type="resident", object_ids=[row.id], grid_code=row.grid_code)
    return row


def update_resident(session: Session, principal: Principal, scope: Scope, resident_id: int,
                    changes: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Change name, phone, relation, tags, the ID number (gender and birth date follow it; one
    registered already is stored for review, as at registration) or the household (a move: the
    grid follows the household)."""
    from gridmap import phone as phones

    require(principal, "residents.write")
    row = session.execute(text(f"SELECT {COLUMNS} FROM resident r WHERE r.id = :id"), {"id": resident_id}).first()
    if row is None or not scope.covers(row.grid_code):
        raise NotFound(f"No resident {resident_id}")
    sets: dict[str, Any] = {}
    if "name" in changes:
        sets["name"] = _text_field("name", changes["name"], required=True)
    if "relation" in changes:
        sets["relation"] = _text_field("relation", changes["relation"])
    if "phone" in changes:
        sets["phone"] = phones.normalize(changes["phone"]) if changes["phone"] else None
    if "tags" in changes:
        sets["tags"] = _tags(changes["tags"])
    if "household_id" in changes:
        household = _household(session, scope, int(changes["household_id"]))
        sets.update(household_id=household.id, building_id=household.building_id, grid_code=household.grid_code)
    if "id_number" in changes:
        number, sex, born = _person(changes["id_number"], None, None)
        sets.update(id_number=number, **({"gender": sex, "birth_date": born} if number else {}))
    if sets:
        assignments = ", ".join(f"{k} = :{k}" for k in sets)  # keys from the fixed names above
        if "id_number" in sets:
            assignments += ", review = :review"
        update = text(f"UPDATE resident r SET {assignments}, updated_at = now() WHERE r.id = :id RETURNING {COLUMNS}")
        if "id_number" in sets:
            row = _write_person(session, principal, update, {**sets, "id": resident_id})
        else:
            row = session.execute(update, {**sets, "id": resident_id}).one()
        audit.record(session, principal, "update", object_type="resident", object_ids=[resident_id], grid_code=row.grid_code,
                     detail={"fields": sorted(sets)})  # fmt: skip
    return _out(row, True)


COUNT_LEVELS = {"grid": (15, 12), "community": (12, 9), "street": (9, 6)}  # code length of the area, of its parent


def count_residents(session: Session, principal: Principal, scope: Scope, *, by: str = "grid",
                    tag: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Residents (optionally with a tag, e.g. 独居老人) per grid, community or street in reach,
    grouped under the parent area with its total. Masked roles get small counts suppressed,
    with complementary suppression so that no total gives them back (gridmap.masking)."""
    if by not in COUNT_LEVELS:
        raise InvalidInput(f"Invalid value for parameter by: one of {', '.join(COUNT_LEVELS)}")
    size, parent = COUNT_LEVELS[by]
    where, params = page_filter("r", scope, grid=None, limit=1, after=None, max_page=1)
    if tag:
        if len(tag) > MAX_TAG or "\x00" in tag:
            raise InvalidInput(f"Invalid value for parameter tag: 1 to {MAX_TAG} characters")
        where.append("r.tags @> ARRAY[CAST(:tag AS text)]")
        params["tag"] = tag.strip()
    rows = session.execute(text(f"SELECT left(r.grid_code, {size}) AS area, count(*) AS n FROM resident r "
                                f"WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1"), params).all()  # fmt: skip
    groups: dict[str, dict[str, int]] = {}
    for area, n in rows:
        groups.setdefault(area[:parent], {})[area] = int(n)
    if scope.clear:
        shown = {p: {"total": sum(cells.values()), "cells": cells} for p, cells in groups.items()}
    else:
        shown = masking.suppress_groups(groups)
    return {"by": by, "tag": tag, "suppressed": not scope.clear, "min_cell": masking.MIN_CELL,
            "groups": [{"parent": p, **g} for p, g in shown.items()]}  # fmt: skip


def resolve_review(session: Session, principal: Principal, scope: Scope, resident_id: int, *, keep: str) -> dict[str, Any]:
    """Settle a resident stored for review because his ID number was registered already: keep
    "this" registration (the earlier one is removed) or the "other" one (this one is removed).
    Keeping this one needs the reviewer to reach both; the answer names what was kept and removed."""
    from sqlalchemy.exc import IntegrityError

    require(principal, "residents.review")
    if keep not in ("this", "other"):
        raise InvalidInput("Invalid value for parameter keep: this or other")
    row = session.execute(text("SELECT id, grid_code, id_number, review FROM resident WHERE id = :id"), {"id": resident_id}).first()
    if row is None or not scope.covers(row.grid_code):
        raise NotFound(f"No resident {resident_id}")
    if row.review is None:
        raise Conflict(f"Resident {resident_id} is not under review")
    # the other registration, if the caller can see it (row-level security hides other grids')
    other = session.execute(text("SELECT id FROM resident WHERE id_number = :n AND review IS NULL AND id <> :id"),
                            {"n": row.id_number, "id": resident_id}).scalar()  # fmt: skip
    if keep == "other":  # this registration was the mistake
        session.execute(text("DELETE FROM resident WHERE id = :id"), {"id": resident_id})
        kept, removed = other, resident_id
    else:
        if other is not None:
            session.execute(text("DELETE FROM resident WHERE id = :id"), {"id": other})
        try:
            with session.begin_nested():
                session.execute(text("UPDATE resident SET review = NULL, updated_at = now() WHERE id = :id"), {"id": resident_id})
        except IntegrityError:  # the number is still held by a registration out of the caller's sight
            raise Forbidden("The registration it duplicates lies outside your grids: an admin over both resolves it") from None
        kept, removed = resident_id, other
    audit.record(session, principal, "review_resolved", object_type="resident", object_ids=[resident_id],
                 grid_code=row.grid_code, detail={"kept": kept, "removed": removed})  # fmt: skip
    return {"kept": kept, "removed": removed}


def delete_resident(session: Session, principal: Principal, scope: Scope, resident_id: int) -> None:
    require(principal, "residents.write")
    term, params = scope_filter("r", scope)
    row = session.execute(text(f"DELETE FROM resident r WHERE r.id = :id AND {term} RETURNING r.grid_code"),
                          {"id": resident_id, **params}).first()  # fmt: skip
    if row is None:
        raise NotFound(f"No resident {resident_id}")
    audit.record(session, principal, "delete", object_type="resident", object_ids=[resident_id], grid_code=row.grid_code)


# ---------------------------------------------------------------------------------------------
# households
# ---------------------------------------------------------------------------------------------

HOUSEHOLD_COLUMNS = "h.id, h.building_id, h.grid_code, h.unit_no, h.size, (SELECT count(*) FROM resident m WHERE m.household_id = h.id) AS members"


def _household_out(row: Any) -> dict[str, Any]:
    return {"id": row.id, "building_id": row.building_id, "grid_code": row.grid_code, "unit_no": row.unit_no,
            "size": row.size, "members": int(row.members)}  # fmt: skip


def list_households(session: Session, principal: Principal, scope: Scope, *, grid: str | None = None,
                    limit: int = 100, after: str | None = None) -> dict[str, Any]:  # fmt: skip
    where, params = page_filter("h", scope, grid=grid, limit=limit, after=after, max_page=MAX_PAGE)
    params["limit"] = limit + 1
    rows = session.execute(text(f"SELECT {HOUSEHOLD_COLUMNS} FROM household h WHERE {' AND '.join(where)} "
                                f"ORDER BY {page_order('h')} LIMIT :limit"), params).all()  # fmt: skip
    page = rows[:limit]
    return {"items": [_household_out(r) for r in page], "next_after": cursor(page[-1]) if len(rows) > limit else None}


def create_household(session: Session, principal: Principal, scope: Scope, *, building_id: int | None = None,
                     grid_code: str | None = None, unit_no: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A household in a building (its grid follows the building) or, without one, in a grid of yours."""
    require(principal, "residents.write")
    if building_id is not None:
        building = session.execute(text("SELECT id, grid_code FROM building WHERE id = :id"), {"id": building_id}).first()
        if building is None or not scope.covers(building.grid_code):
            raise InvalidInput(f"Unknown building {building_id}")
        if grid_code is not None and grid_code != building.grid_code:
            raise InvalidInput("Invalid value for parameter grid_code: the building lies in another grid")
        grid_code = building.grid_code
    elif grid_code is None or not scope.covers(grid_code):
        raise InvalidInput("Invalid value for parameter grid_code: give a building, or one of your grids")
    if unit_no is not None and (len(unit_no) > 32 or "\x00" in unit_no):
        raise InvalidInput("Invalid value for parameter unit_no: at most 32 characters")
    row = session.execute(
        text("INSERT INTO household (building_id, grid_code, unit_no) VALUES (:b, :g, :u) "
             "RETURNING id, building_id, grid_code, unit_no, size, 0 AS members"),
        {"b": building_id, "g": grid_code, "u": unit_no.strip() if unit_no else None},
    ).one()  # fmt: skip
    audit.record(session, principal, "create", object_type="household", object_ids=[row.id], grid_code=grid_code)
    return _household_out(row)


def delete_household(session: Session, principal: Principal, scope: Scope, household_id: int) -> None:
    """Remove a household of the caller's grids once nobody is registered in it any more."""
    require(principal, "residents.write")
    row = session.execute(text("SELECT id, grid_code FROM household WHERE id = :id"), {"id": household_id}).first()
    if row is None or not scope.covers(row.grid_code):
        raise NotFound(f"No household {household_id}")
    members = session.execute(text("SELECT count(*) FROM resident WHERE household_id = :id"), {"id": household_id}).scalar_one()
    if members:
        raise Conflict(f"Household {household_id} still has {members} member(s): move or remove them first")
    session.execute(text("DELETE FROM household WHERE id = :id"), {"id": household_id})
    audit.record(session, principal, "delete", object_type="household", object_ids=[household_id], grid_code=row.grid_code)


# ---------------------------------------------------------------------------------------------
# exports
# ---------------------------------------------------------------------------------------------

EXPORT_LIMIT = 200_000
EXPORT_HEADER = ["pseudonym", "household", "grid_code", "name", "id_number", "gender", "birth_year", "phone", "relation", "tags"]


def pseudonym_key() -> bytes:
    """The export pseudonym key: GRIDMAP_PSEUDONYM_KEY, else derived from GRIDMAP_SECRET_KEY (both outside the database)."""
    import hashlib
    import hmac

    from gridmap.settings import api_settings

    settings = api_settings()
    if settings.pseudonym_key:
        return settings.pseudonym_key.encode()
    return hmac.new(settings.secret_key.encode(), b"gridmap pseudonyms", hashlib.sha256).digest()


def export_residents(session: Session, principal: Principal, scope: Scope, *, grid: str | None = None) -> str:
    """The residents in reach as CSV, always de-identified: masked values, stable pseudonyms of
    the person (from the ID number, else the record) and of the household, no clear identifier."""
    import csv
    import io

    from gridmap.errors import PayloadTooLarge

    require(principal, "residents.export")
    where, params = page_filter("r", scope, grid=grid, limit=1, after=None, max_page=1)
    rows = session.execute(text(f"SELECT {COLUMNS} FROM resident r WHERE {' AND '.join(where)} ORDER BY r.id LIMIT :n"),
                           {**params, "n": EXPORT_LIMIT + 1}).all()  # fmt: skip
    if len(rows) > EXPORT_LIMIT:
        raise PayloadTooLarge(f"More than {EXPORT_LIMIT:,} residents: export one grid or street at a time")
    key = pseudonym_key()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EXPORT_HEADER)
    for r in rows:
        person = masking.pseudonym(r.id_number or f"record:{r.id}", key, purpose="resident")
        household = masking.pseudonym(f"household:{r.household_id}", key, purpose="household") if r.household_id else ""
        writer.writerow([person, household, r.grid_code, masking.mask_name(r.name), masking.mask_id_number(r.id_number),
                         r.gender or "", r.birth_date.year if r.birth_date else "", masking.mask_phone(r.phone) or "",
                         r.relation or "", ";".join(r.tags or [])])  # fmt: skip
    audit.record(session, principal, "export", object_type="resident", grid_code=grid,
                 detail={"rows": len(rows), "masked": True})  # fmt: skip
    return buf.getvalue()

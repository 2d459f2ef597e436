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
from gridmap.access import Scope
from gridmap.auth import Principal
from gridmap.errors import InvalidInput, NotFound

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
                   limit: int = 100, after: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Residents in scope by id, a page at a time (`after` = the last id of the previous page)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"Invalid value for parameter limit: 1 to {MAX_PAGE}")
    where, params = ["true"], {"limit": limit + 1}
    if not scope.all_grids:  # the service's own check; row-level security checks again
        where.append("r.grid_code = ANY(:grids)")
        params["grids"] = list(scope.grids)
    if grid is not None:
        if not (len(grid) == 15 and grid.isascii() and grid.isdigit()):
            raise InvalidInput("Invalid value for parameter grid: a grid code has 15 digits")
        where.append("r.grid_code = :grid")
        params["grid"] = grid
    if after is not None:
        where.append("r.id > :after")
        params["after"] = after
    rows = session.execute(text(f"SELECT {COLUMNS} FROM resident r WHERE {' AND '.join(where)} ORDER BY r.id LIMIT :limit"),
                           params).all()  # fmt: skip
    page = rows[:limit]
    items = [_out(r, scope.clear) for r in page]
    if scope.clear and items:
        audit.record(session, principal, "read", object_type="resident", object_ids=[i["id"] for i in items],
                     grid_code=grid, detail={"fields": "all", "count": len(items)})  # fmt: skip
    return {"items": items, "next_after": page[-1].id if len(rows) > limit else None}


def get_resident(session: Session, principal: Principal, scope: Scope, resident_id: int) -> dict[str, Any]:
    row = session.execute(text(f"SELECT {COLUMNS} FROM resident r WHERE r.id = :id"), {"id": resident_id}).first()
    if row is None or not scope.covers(row.grid_code):
        raise NotFound(f"No resident {resident_id}")
    if scope.clear:
        audit.record(session, principal, "read", object_type="resident", object_ids=[row.id], grid_code=row.grid_code)
    return _out(row, scope.clear)

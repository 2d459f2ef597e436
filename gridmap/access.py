"""Who may see which personal data, and the database context that enforces it.

The rule from the field: a grid's workers and leader read and enter the residents of their own
grids only; community, street and district admins those of the grids below them; everyone else
either works with de-identified data city-wide (command center, analyst, admin) or sees no
personal data at all (dispatcher, planner, auditor).

`open_scope` is the first thing every request that touches personal data does in its
transaction: it becomes ``gridmap_api`` (``SET LOCAL ROLE``) and states the caller's grids
with transaction-local settings, so the database's row-level security (migration 0008) is a
second wall behind the checks here. Nothing of it outlives the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap.auth import Principal
from gridmap.errors import Forbidden, InvalidInput

# roles that see clear personal data, within their scopes
CLEAR_IN_SCOPE = frozenset({"grid_worker", "grid_leader", "community_admin", "street_admin", "district_admin"})
# roles that see every grid, de-identified
MASKED_CITY_WIDE = frozenset({"command_center", "analyst", "admin"})


@dataclass(frozen=True)
class Scope:
    """What a request may reach: all grids, or these grid codes; clear or masked values."""

    clear: bool
    all_grids: bool
    grids: tuple[str, ...]

    def covers(self, grid_code: str | None) -> bool:
        return grid_code is not None and (self.all_grids or grid_code in self.grids)


def grids_of(session: Session, principal: Principal) -> tuple[bool, tuple[str, ...]]:
    """(city-wide, grid codes in force) under the principal's scopes."""
    if any(level == "city" for level, _ in principal.scopes):
        return True, ()
    prefixes = [code for level, code in principal.scopes if level != "city" and code]
    if not prefixes:
        return False, ()
    codes = session.execute(
        text("SELECT DISTINCT code FROM grid WHERE valid_to IS NULL AND code LIKE ANY (:p) ORDER BY code"),
        {"p": [p + "%" for p in prefixes]},
    ).scalars()  # fmt: skip
    return False, tuple(codes)


def reach(session: Session, principal: Principal, *, city_wide: frozenset[str], what: str) -> Scope:
    """Grid staff reach their grids (clear); `city_wide` roles every grid (masked); others 403."""
    if principal.role in CLEAR_IN_SCOPE:
        everywhere, grids = grids_of(session, principal)
        return Scope(clear=True, all_grids=everywhere, grids=grids)
    if principal.role in city_wide:
        return Scope(clear=False, all_grids=True, grids=())
    raise Forbidden(f"The role {principal.role} has no access to {what}")


def resident_scope(session: Session, principal: Principal) -> Scope:
    """The caller's reach over residents and households; 403 for roles without personal data."""
    return reach(session, principal, city_wide=MASKED_CITY_WIDE, what="residents' data")


def page_filter(alias: str, scope: Scope, *, grid: str | None, limit: int, after: int | None,
                max_page: int) -> tuple[list[str], dict[str, object]]:  # fmt: skip
    """WHERE terms and parameters of a keyset page over `alias` (a table with id and grid_code):
    the caller's grids (the service's own check), an optional grid, rows after `after`."""
    if not 1 <= limit <= max_page:
        raise InvalidInput(f"Invalid value for parameter limit: 1 to {max_page}")
    where: list[str] = ["true"]
    params: dict[str, object] = {}
    if not scope.all_grids:
        where.append(f"{alias}.grid_code = ANY(:grids)")
        params["grids"] = list(scope.grids)
    if grid is not None:
        if not (len(grid) == 15 and grid.isascii() and grid.isdigit()):
            raise InvalidInput("Invalid value for parameter grid: a grid code has 15 digits")
        where.append(f"{alias}.grid_code = :grid")
        params["grid"] = grid
    if after is not None:
        where.append(f"{alias}.id > :after")
        params["after"] = after
    return where, params


def open_scope(session: Session, scope: Scope) -> None:
    """Become gridmap_api for the rest of this transaction and state the caller's grids."""
    session.execute(text("SET LOCAL ROLE gridmap_api"))
    session.execute(
        text("SELECT set_config('gridmap.grids', :g, true), set_config('gridmap.all', :a, true)"),
        {"g": ",".join(scope.grids), "a": "on" if scope.all_grids else ""},
    )  # fmt: skip

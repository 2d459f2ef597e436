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

from gridmap import vocab
from gridmap.auth import Principal
from gridmap.errors import Forbidden, InvalidInput

GRID_STAFF = frozenset({"grid_worker", "grid_leader"})
AREA_ADMINS = frozenset({"community_admin", "street_admin", "district_admin"})
# roles that see clear personal data, within their scopes
CLEAR_IN_SCOPE = GRID_STAFF | AREA_ADMINS
# roles that see every grid, de-identified
MASKED_CITY_WIDE = frozenset({"command_center", "analyst", "admin"})
EVERYONE = frozenset(vocab.STAFF_ROLES)
COMMANDERS = AREA_ADMINS | {"grid_leader", "dispatcher", "command_center", "admin"}


@dataclass(frozen=True)
class Function:
    """One function of the API and the roles that may use it."""

    zh: str
    en: str
    roles: frozenset[str]


# Every endpoint names the function it performs; `require` checks the role against this table,
# and within a function grid staff and area admins reach only their grids (`reach`). The table
# is the one place these rules are written (docs/access.md shows it, GET /v1/auth/me lists the
# caller's functions).
FUNCTIONS: dict[str, Function] = {
    "grids.read": Function("查看网格与分类", "read grids and categories", EVERYONE),
    "locate": Function("定位责任网格", "locate the responsible grid", EVERYONE - {"auditor"}),
    "incidents.report": Function("上报案件", "report incidents", CLEAR_IN_SCOPE | {"dispatcher", "command_center", "admin"}),
    "incidents.read": Function("查看案件", "read incidents", EVERYONE - {"auditor"}),
    "incidents.handle": Function("处置案件（开始、反馈、上报上级）", "handle incidents (start, resolve, escalate)",
                                 CLEAR_IN_SCOPE | {"dispatcher", "command_center", "admin"}),
    "incidents.command": Function("立案、派遣、核查、结案、返工", "register, dispatch, verify, close, reopen", COMMANDERS),
    "dispatch.candidates": Function("派遣候选人", "dispatch candidates", COMMANDERS),
    "sla.tick": Function("超期升级", "escalate overdue cases", frozenset({"dispatcher", "command_center", "admin"})),
    "kpis.read": Function("考核指标", "read KPIs", EVERYONE - {"auditor"}),
    "positions.send": Function("上报位置", "send GPS positions (one's own; admin for devices)", EVERYONE - {"auditor"}),
    "residents.read": Function("查看居民", "read residents' data", CLEAR_IN_SCOPE | MASKED_CITY_WIDE),
    "residents.write": Function("登记、修改居民", "change residents' data", CLEAR_IN_SCOPE),
    "residents.review": Function("处理重复身份证号", "resolve duplicate ID numbers", AREA_ADMINS),
    "residents.export": Function("导出居民（脱敏）", "export residents", AREA_ADMINS | MASKED_CITY_WIDE),
    "buildings.read": Function("查看楼栋", "read buildings",
                               CLEAR_IN_SCOPE | MASKED_CITY_WIDE | {"dispatcher", "planner"}),
    "buildings.write": Function("登记、修改楼栋", "change buildings", CLEAR_IN_SCOPE),
    "stats.read": Function("统计分析（热点、巡查覆盖、三零）", "read statistics (hotspots, patrol coverage, three zeros)",
                           EVERYONE - {"auditor"}),
    "map.read": Function("查看地图与矢量切片", "read the map and its tiles", EVERYONE - {"auditor"}),
    "audit.read": Function("查看审计日志", "read the audit log", frozenset({"auditor"})),
    "plans.read": Function("查看网格调整方案", "read grid plans (validation, impact)",
                           AREA_ADMINS | {"planner", "command_center", "admin"}),
    "plans.write": Function("编制网格调整方案", "make and edit grid plans", frozenset({"planner", "admin"})),
    "plans.apply": Function("生效、撤销网格调整", "apply and roll back grid plans", frozenset({"planner", "admin"})),
}  # fmt: skip
# transitions need the function of their action
ACTION_FUNCTION = {"start": "incidents.handle", "resolve": "incidents.handle", "escalate": "incidents.handle",
                   "register": "incidents.command", "reject": "incidents.command", "dispatch": "incidents.command",
                   "verify": "incidents.command", "close": "incidents.command", "reopen": "incidents.command"}  # fmt: skip


def allows(principal: Principal, function: str) -> bool:
    return principal.role in FUNCTIONS[function].roles


def require(principal: Principal, function: str) -> None:
    """403 unless the caller's role may use `function`."""
    if not allows(principal, function):
        f = FUNCTIONS[function]
        raise Forbidden(f"The role {principal.role} may not {f.en} ({f.zh})")


def functions_of(principal: Principal) -> list[str]:
    return [name for name in FUNCTIONS if allows(principal, name)]


def check_positions(principal: Principal, staff_id: int) -> None:
    """Staff send their own GPS positions; an admin (a device gateway's key) anyone's."""
    require(principal, "positions.send")
    if principal.role != "admin" and not (principal.kind == "user" and principal.id == staff_id):
        raise Forbidden("You may send only your own positions (只能上报本人位置)")


def check_action(principal: Principal, action: str, assignee_id: int | None) -> None:
    """May the caller take this workflow action on a case of his grids? A grid worker starts and
    resolves only the cases assigned to him; other checks are the function's (403 otherwise)."""
    function = ACTION_FUNCTION.get(action)
    if function is None:
        return  # an unknown action: the workflow refuses it with the list of actions
    require(principal, function)
    if principal.role == "grid_worker" and action in ("start", "resolve") and assignee_id != principal.id:
        raise Forbidden(f"Only the assignee may {action} this case (只有承办人可以处置)")


CODE_DIGITS = 15  # grid codes: district 6 + street 3 + community 3 + grid 3; all codes of an area share its prefix


@dataclass(frozen=True)
class Scope:
    """What a request may reach: all grids, or these grid codes; clear or masked values.

    `area` is set when the grids are exactly one area's (a grid, community, street or district
    code): then they are the contiguous code range [area000…, area999…], which both the
    service's filter and row-level security test as an index range instead of a list."""

    clear: bool
    all_grids: bool
    grids: tuple[str, ...]
    area: str | None = None

    def covers(self, grid_code: str | None) -> bool:
        if grid_code is None:
            return False
        if self.all_grids:
            return True
        return grid_code.startswith(self.area) if self.area else grid_code in self.grids

    def code_range(self) -> tuple[str, str]:
        """The lowest and highest grid code in reach (an empty range when nothing is)."""
        if self.all_grids:
            return "0" * CODE_DIGITS, "9" * CODE_DIGITS
        if self.area:
            return self.area.ljust(CODE_DIGITS, "0"), self.area.ljust(CODE_DIGITS, "9")
        if self.grids:
            return min(self.grids), max(self.grids)
        return "1", "0"


def reach_at_once(principal: Principal, function: str) -> Scope | None:
    """`reach` when it needs no database — a role that sees every grid, a city scope, one area
    (a code range) or none — and None when it does (several areas: their grids are listed)."""
    require(principal, function)
    if principal.role not in CLEAR_IN_SCOPE:
        return Scope(clear=False, all_grids=True, grids=())
    if any(level == "city" for level, _ in principal.scopes):
        return Scope(clear=True, all_grids=True, grids=())
    prefixes = sorted({code for level, code in principal.scopes if level != "city" and code})
    if not prefixes:
        return Scope(clear=True, all_grids=False, grids=())
    if len(prefixes) == 1:  # one area: a code range, no list needed
        return Scope(clear=True, all_grids=False, grids=(), area=prefixes[0])
    return None


def reach(session: Session, principal: Principal, function: str) -> Scope:
    """What the caller reaches with `function`: grid staff and area admins their grids (clear),
    the function's other roles every grid (masked where it matters); 403 for the rest."""
    scope = reach_at_once(principal, function)
    if scope is not None:
        return scope
    prefixes = sorted({code for level, code in principal.scopes if level != "city" and code})
    codes = session.execute(
        text("SELECT DISTINCT code FROM grid WHERE valid_to IS NULL AND code LIKE ANY (:p) ORDER BY code"),
        {"p": [p + "%" for p in prefixes]},
    ).scalars()  # fmt: skip
    return Scope(clear=True, all_grids=False, grids=tuple(codes))


def resident_scope(session: Session, principal: Principal) -> Scope:
    """The caller's reach over residents and households; 403 for roles without personal data."""
    return reach(session, principal, "residents.read")


def narrow(scope: Scope, area: str | None) -> Scope:
    """The caller's reach within one area (a district, street, community or grid code): what
    both cover. An area outside the caller's reach leaves nothing, as if it had no grids."""
    if area is None:
        return scope
    if not (area.isascii() and area.isdigit() and len(area) in (6, 9, 12, 15)):
        raise InvalidInput("Invalid value for parameter area: a 6-, 9-, 12- or 15-digit district, street, community or grid code")
    if scope.all_grids:
        return Scope(clear=scope.clear, all_grids=False, grids=(), area=area)
    if scope.area:
        if area.startswith(scope.area):
            return Scope(clear=scope.clear, all_grids=False, grids=(), area=area)
        return scope if scope.area.startswith(area) else Scope(clear=scope.clear, all_grids=False, grids=())
    return Scope(clear=scope.clear, all_grids=False, grids=tuple(g for g in scope.grids if g.startswith(area)))


def scope_filter(alias: str, scope: Scope, column: str = "grid_code") -> tuple[str, dict[str, object]]:
    """The WHERE term (and its parameters) keeping `alias`'s rows within the caller's grids (by
    their grid code `column`): a code range for one area, the grid list otherwise, nothing
    city-wide."""
    if scope.all_grids:
        return "true", {}
    if scope.area:
        lo, hi = scope.code_range()
        return f"{alias}.{column} BETWEEN :scope_lo AND :scope_hi", {"scope_lo": lo, "scope_hi": hi}
    return f"{alias}.{column} = ANY(:scope_grids)", {"scope_grids": list(scope.grids)}


def page_filter(alias: str, scope: Scope, *, grid: str | None, limit: int, after: str | None,
                max_page: int) -> tuple[list[str], dict[str, object]]:  # fmt: skip
    """WHERE terms and parameters of a keyset page over `alias` (a table with id and grid_code,
    indexed on (grid_code, id)): the caller's grids (the service's own check), an optional grid,
    rows after the cursor `after`. Order the page by `page_order`; the next cursor is `cursor`."""
    if not 1 <= limit <= max_page:
        raise InvalidInput(f"Invalid value for parameter limit: 1 to {max_page}")
    term, params = scope_filter(alias, scope)
    where: list[str] = [term]
    if grid is not None:
        if not (len(grid) == CODE_DIGITS and grid.isascii() and grid.isdigit()):
            raise InvalidInput("Invalid value for parameter grid: a grid code has 15 digits")
        where.append(f"{alias}.grid_code = :grid")
        params["grid"] = grid
    if after is not None:
        code, _, last = after.partition("-")
        if not (code.isascii() and code.isdigit() and len(code) == CODE_DIGITS and last.isascii() and last.isdigit()
                and len(last) <= 19):  # fmt: skip
            raise InvalidInput("Invalid value for parameter after: not a cursor from this API; start again without it")
        where.append(f"({alias}.grid_code, {alias}.id) > (:after_grid, :after_id)")
        params["after_grid"], params["after_id"] = code, int(last)
    return where, params


def page_order(alias: str) -> str:
    """Pages go by grid, then id: an index range scan of (grid_code, id) whatever the scope's
    size (by id alone, the scan would walk every row of the city to find one grid's)."""
    return f"{alias}.grid_code, {alias}.id"


def cursor(row: object) -> str:
    """The cursor after `row` (with grid_code and id) for the next page."""
    return f"{row.grid_code}-{row.id}"  # type: ignore[attr-defined]


SCOPE_SQL = text(
    "SELECT set_config('role', 'gridmap_api', true), set_config('gridmap.lo', :lo, true), "
    "set_config('gridmap.hi', :hi, true), set_config('gridmap.ranged', :r, true), "
    "set_config('gridmap.grids', :g, true), set_config('gridmap.all', :a, true)"
)


def open_scope(session: Session, scope: Scope) -> None:
    """Become gridmap_api for the rest of this transaction and state the caller's reach, in one
    statement: the code range, whether every code in it is the caller's (one area, or the
    city), and otherwise the grid codes themselves (migration 0012)."""
    lo, hi = scope.code_range()
    ranged = scope.all_grids or scope.area is not None
    session.execute(SCOPE_SQL, {"lo": lo, "hi": hi, "r": "on" if ranged else "", "g": "" if ranged else ",".join(scope.grids),
                                "a": "on" if scope.all_grids else ""})  # fmt: skip

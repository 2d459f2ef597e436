"""`gridmap plan …`: grid plans from the command line (网格调整) — the same service as the API.

The CLI acts as an administrator (whoever can run it can reach the database); what it does is
audited under the name of the operating-system user.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gridmap.errors import GridmapError

console = Console(soft_wrap=True)
plan_app = typer.Typer(help="Grid plans (网格调整): import, validate, impact, apply, rollback, suggest.", no_args_is_help=True)
ScopeOpt = Annotated[str, typer.Option("--scope", help="the 12-digit community, 9-digit street or 6-digit district code")]
PlanArg = Annotated[int, typer.Argument(help="the plan's id", min=1)]


@plan_app.callback()
def _group() -> None:
    """Grid plans (网格调整): import, validate, impact, apply, rollback, suggest."""


def _operator() -> Any:
    from gridmap.auth import Principal

    return Principal("cli", 0, f"cli:{getpass.getuser()}", "admin", (("city", ""),))


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    console.print(f"written to {path}")


def _show_plan(plan: dict[str, Any]) -> None:
    console.print(f"plan {plan['id']} 「{plan['name']}」 {plan['scope_level']} {plan['scope_code']}: {plan['grids']} grids, {plan['status']}")


@plan_app.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(help="GeoJSON, GeoPackage or zipped Shapefile of grid polygons (code, name, kind optional)")],
    scope: ScopeOpt,
    name: Annotated[str, typer.Option(help="the plan's name")] = "",
    crs: Annotated[str | None, typer.Option(help="the file's CRS when it declares none (EPSG:4490, GCJ02, BD09, EPSG:n)")] = None,
    layer: Annotated[str | None, typer.Option(help="the layer of a GeoPackage with several")] = None,
) -> None:
    """Make a draft plan from a file. 由文件导入调整方案。"""
    from gridmap import io
    from gridmap.db import session_scope
    from gridmap.services import plans

    if not path.exists():
        raise GridmapError(f"{path} does not exist")
    frame = io.read_layer(path, layer=layer, crs=crs)
    with session_scope() as session:
        _show_plan(plans.create(session, _operator(), name=name or path.stem, scope_code=scope, frame=frame))


@plan_app.command("new")
def new_command(scope: ScopeOpt, name: Annotated[str, typer.Option(help="the plan's name")] = "draft") -> None:
    """Make a draft plan that starts as a copy of the grids in force. 以现有网格为底稿。"""
    from gridmap.db import session_scope
    from gridmap.services import plans

    with session_scope() as session:
        _show_plan(plans.create(session, _operator(), name=name, scope_code=scope))


@plan_app.command("list")
def list_command(scope: Annotated[str | None, typer.Option(help="only plans of this area")] = None) -> None:
    """The plans, newest first. 方案列表。"""
    from gridmap.db import session_scope
    from gridmap.services import plans

    with session_scope() as session:
        rows = plans.listing(session, _operator(), scope_code=scope)
    table = Table("id", "name", "scope", "status", "grids", "created", "applied")
    for p in rows:
        table.add_row(str(p["id"]), p["name"], p["scope_code"], p["status"], str(p["grids"]), (p["created_at"] or "")[:16],
                      (p["applied_at"] or "")[:16])  # fmt: skip
    console.print(table)


@plan_app.command("validate")
def validate_command(
    plan_id: PlanArg,
    households_min: Annotated[int | None, typer.Option(help="households per general grid, at least (default 300)")] = None,
    households_max: Annotated[int | None, typer.Option(help="households per general grid, at most (default 500)")] = None,
    residents_max: Annotated[int | None, typer.Option(help="residents per grid, at most (default 2,500)")] = None,
    tolerance: Annotated[float | None, typer.Option(help="metres of overlap, gap or overhang ignored (default 1)")] = None,
    kind_ranges: Annotated[str | None, typer.Option(help="household ranges of other kinds: school:100-800,industrial_park:0-300")] = None,
    out: Annotated[Path | None, typer.Option(help="write the findings as GeoJSON here")] = None,
) -> None:
    """Check the plan: exit 1 when it has errors. 校验方案。"""
    from gridmap.db import session_scope
    from gridmap.services import plans

    rules = plans.rules_from(households_min=households_min, households_max=households_max, residents_max=residents_max,
                             tolerance_m=tolerance, kind_ranges=kind_ranges)  # fmt: skip
    with console.status("validating …"), session_scope() as session:
        result = plans.validation(session, _operator(), plan_id, rules)
    table = Table("severity", "type", "message")
    for f in result["findings"]:
        table.add_row(f["severity"], f["type"], f"{f['message']}\n{f['message_zh']}")
    if result["findings"]:
        console.print(table)
    if out:
        _write_json(out, {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": f["geometry"], "properties": {k: v for k, v in f.items() if k != "geometry"}}
            for f in result["findings"]]})  # fmt: skip
    console.print(f"plan {plan_id}: {result['errors']} errors, {result['warnings']} warnings ({result['seconds']:.2f} s); status {result['status']}")
    if result["errors"]:
        raise typer.Exit(1)


@plan_app.command("impact")
def impact_command(plan_id: PlanArg, out: Annotated[Path | None, typer.Option(help="write the whole impact as JSON here")] = None) -> None:
    """What applying would move. 影响预览。"""
    from gridmap.db import session_scope
    from gridmap.services import plans

    with console.status("computing the impact …"), session_scope() as session:
        result = plans.impact(session, _operator(), plan_id)
    moves = Table("from", "to", "buildings", "households", "residents", "open cases", title="moves 变更")
    for m in result["moves"]:
        moves.add_row(str(m["from"]), m["to"], *(f"{m[k]:,}" for k in ("buildings", "households", "residents", "open_incidents")))
    console.print(moves)
    grids = Table("grid", "kind", "households", "residents", "km²", "cases 90 d", "patrolled", "Polsby–Popper", title="new grids 新网格")
    for g in result["grids"]:
        share = g["patrol_covered_share"]
        grids.add_row(g["code"], g["kind"], f"{g['households']:,}", f"{g['residents']:,}", f"{g['area_km2']:.3f}", f"{g['cases_90d']:,}",
                      "—" if share is None else f"{share:.0%}", f"{g['polsby_popper']:.2f}")  # fmt: skip
    console.print(grids)
    for s in result["staff"]:
        if s["action"] == "flagged":
            console.print(f"[yellow]flagged:[/] {s['reason']}" + (f" ({s['name']}, {s['from']} → {s['to']})" if s["name"] else ""))
    b = result["balance"]
    console.print(f"households per general grid: max deviation {b['before']['max_deviation'] or 0:.0%} → {b['after']['max_deviation'] or 0:.0%}, "
                  f"in range {b['before']['in_range'] or 0:.0%} → {b['after']['in_range'] or 0:.0%} ({result['seconds']:.2f} s)")  # fmt: skip
    if out:
        _write_json(out, result)


@plan_app.command("apply")
def apply_command(
    plan_id: PlanArg,
    effective_at: Annotated[dt.datetime | None, typer.Option(help="when it takes effect, with a time zone (default now)",
                                                             formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"])] = None,
) -> None:
    """Apply the plan, all or nothing; with a later --effective-at, check it now and schedule it. 方案生效。"""
    from gridmap.db import session_scope
    from gridmap.services import plans

    with console.status("applying …") as status, session_scope() as session:
        result = plans.apply(session, _operator(), plan_id, effective_at=effective_at, progress=lambda step: status.update(f"{step} …"))
    if result["status"] == "scheduled":
        console.print(f"plan {plan_id} checked and scheduled for {result['effective_at']}")
        return
    _report(result)


@plan_app.command("apply-due")
def apply_due_command() -> None:
    """Apply the scheduled plans whose time has come (cron; the API processes do it too). 执行到期方案。"""
    from gridmap.db import make_engine
    from gridmap.services import plans

    done = plans.apply_due(make_engine())
    for d in done:
        console.print(f"plan {d['plan_id']}: {d['status']}" + (f" — {d['reason']}" if d.get("reason") else f" at {d['effective_at']}"))
    console.print(f"{len(done)} scheduled plan{'s' if len(done) != 1 else ''} due")


@plan_app.command("rollback")
def rollback_command(plan_id: PlanArg) -> None:
    """Restore the grids an applied plan replaced (as a new plan). 撤销调整。"""
    from gridmap.db import session_scope
    from gridmap.services import plans

    with console.status("rolling back …"), session_scope() as session:
        result = plans.rollback(session, _operator(), plan_id)
    _report(result)


def _report(result: dict[str, Any]) -> None:
    g, t = result["grids"], result["totals"]
    console.print(f"plan {result['plan_id']} applied at {result['effective_at']}: {len(g['created'])} grids created, "
                  f"{len(g['new_versions'])} redrawn, {len(g['retired'])} retired, {len(g['unchanged'])} unchanged; moved "
                  f"{t['buildings']:,} buildings, {t['households']:,} households, {t['residents']:,} residents, "
                  f"{t['open_incidents']:,} open cases; staff {t['staff_updated']} updated, {t['staff_flagged']} flagged")  # fmt: skip


@plan_app.command("suggest")
def suggest_command(
    scope: ScopeOpt,
    households_min: Annotated[int, typer.Option(min=1, help="households per grid, at least")] = 300,
    households_max: Annotated[int, typer.Option(min=1, help="households per grid, at most")] = 500,
    balance_load: Annotated[bool, typer.Option(help="also balance the 90-day case load")] = False,
    seed: Annotated[int, typer.Option(min=0, help="random seed (the same seed, the same plan)")] = 0,
) -> None:
    """Suggest a balanced plan from the buildings, beside the current grids and k-means. 建议方案。"""
    from gridmap.db import session_scope
    from gridmap.services import plans

    with console.status("suggesting …") as status, session_scope() as session:
        result = plans.suggest(session, _operator(), scope_code=scope, households_min=households_min, households_max=households_max,
                               balance_load=balance_load, seed=seed, progress=lambda step: status.update(f"{step} …"))  # fmt: skip
    table = Table("", "grids", "max deviation", "std", "in range", "Polsby–Popper mean", "Reock mean", title="balance and compactness")
    for label, m in (("suggested", result["comparison"]["suggested"]), ("k-means", result["comparison"]["kmeans"]),
                     ("current", result["comparison"]["current"])):  # fmt: skip
        if m:
            table.add_row(label, str(m["n"]), f"{m['max_deviation'] or 0:.0%}", f"{m['std'] or 0:.0f}", f"{m['in_range'] or 0:.0%}",
                          f"{m['polsby_popper_mean'] or 0:.2f}", f"{m['reock_mean'] or 0:.2f}")  # fmt: skip
    console.print(table)
    _show_plan(result["plan"])
    console.print(f"in {result['seconds']:.1f} s; next: gridmap plan validate {result['plan']['id']}")


@plan_app.command("map")
def map_command(plan_id: PlanArg, out: Annotated[Path, typer.Option(help="the HTML file to write")] = Path("plan.html")) -> None:
    """The plan's diff map (old and new boundaries, moved buildings, findings) as one HTML file. 对比地图。"""
    from gridmap import maps
    from gridmap.db import session_scope

    with console.status("drawing …"), session_scope() as session:
        page = maps.plan_map(session, _operator(), plan_id)
    out.write_text(page, encoding="utf-8")
    console.print(f"written to {out} ({len(page) / 1e6:.1f} MB)")

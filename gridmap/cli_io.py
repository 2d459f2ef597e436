"""`gridmap import …` and `gridmap export …`: thin typer commands over gridmap.io."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from gridmap.errors import GridmapError, InvalidInput

if TYPE_CHECKING:  # gridmap.io pulls in geopandas: imported when a command runs, not for --help
    from gridmap import io

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

SHOWN_REJECTS = 20

import_app = typer.Typer(
    help="Import admin areas, grids or buildings from GeoJSON, GeoPackage or (zipped) Shapefile. "
    "导入行政区划、网格、建筑。",
    no_args_is_help=True,
)


class LayerChoice(StrEnum):
    admin_areas = "admin-areas"
    grids = "grids"
    buildings = "buildings"


class UnknownUseChoice(StrEnum):
    reject = "reject"
    other = "other"


FileArg = Annotated[
    Path,
    typer.Argument(
        metavar="FILE", help="GeoJSON, GeoPackage, Shapefile or zipped Shapefile / 数据文件"
    ),
]
MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        "-m",
        metavar="TARGET=SOURCE",
        help="Column mapping TARGET=SOURCE, repeatable (e.g. --map code=ADCODE) / 字段映射",
    ),
]
LayerOpt = Annotated[
    str | None, typer.Option("--layer", help="Layer inside a GeoPackage or zip / 图层名")
]
CrsOpt = Annotated[
    str | None,
    typer.Option(
        "--crs", help="CRS of a file that declares none, e.g. EPSG:4490 / 无坐标系文件的坐标系"
    ),
]
ForceCrsOpt = Annotated[
    bool,
    typer.Option(
        "--force-crs", help="Use --crs even when the file declares another CRS / 强制使用 --crs"
    ),
]
EncodingOpt = Annotated[
    str | None,
    typer.Option(
        "--encoding", help="Text encoding of a Shapefile without .cpg, e.g. GBK / 字符编码"
    ),
]
SkipOpt = Annotated[
    bool,
    typer.Option(
        "--skip-invalid", help="Load the valid rows and report the rejected ones / 跳过无效行"
    ),
]
RejectsOpt = Annotated[
    Path | None,
    typer.Option(
        "--rejects", help="Write rejected rows with a reason column to this GeoJSON / 被拒行输出"
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Validate only, write nothing / 仅校验")]
RepairOpt = Annotated[
    bool,
    typer.Option(
        "--repair", help="Repair invalid polygons with make_valid and report them / 修复无效几何"
    ),
]


def _layer_command(layer: io.LayerName, doc: str) -> None:
    """Register `gridmap import <layer>` with the options every layer shares."""

    def command(
        file: FileArg,
        map_: MapOpt = None,
        layer_name: LayerOpt = None,
        crs: CrsOpt = None,
        force_crs: ForceCrsOpt = False,
        encoding: EncodingOpt = None,
        skip_invalid: SkipOpt = False,
        rejects: RejectsOpt = None,
        dry_run: DryRunOpt = False,
        repair: RepairOpt = False,
    ) -> None:
        _run_import(layer, file, map_, layer=layer_name, crs=crs, force_crs=force_crs, encoding=encoding,
                    skip_invalid=skip_invalid, rejects=rejects, dry_run=dry_run, repair=repair)  # fmt: skip

    command.__doc__ = doc
    import_app.command(layer)(command)


_layer_command("admin-areas", "Import districts, streets and communities (code, name; level and parent derived from the code).")
_layer_command("grids", "Import new unit grids (15-digit code, name; community derived from the code).")


@import_app.command("buildings")
def import_buildings(
    file: FileArg,
    map_: MapOpt = None,
    layer: LayerOpt = None,
    crs: CrsOpt = None,
    force_crs: ForceCrsOpt = False,
    encoding: EncodingOpt = None,
    skip_invalid: SkipOpt = False,
    rejects: RejectsOpt = None,
    dry_run: DryRunOpt = False,
    repair: RepairOpt = False,
    unknown_use: Annotated[
        UnknownUseChoice,
        typer.Option(
            "--unknown-use",
            help="Unknown `use` values: reject the row, or load it as 'other' / 未知用途",
        ),
    ] = UnknownUseChoice.reject,
) -> None:
    """Import building footprints; each gets the grid in force that contains it."""
    _run_import(
        "buildings",
        file,
        map_,
        layer=layer,
        crs=crs,
        force_crs=force_crs,
        encoding=encoding,
        skip_invalid=skip_invalid,
        rejects=rejects,
        dry_run=dry_run,
        repair=repair,
        unknown_use=unknown_use.value,
    )


def export_command(
    layer: Annotated[LayerChoice, typer.Argument(help="admin-areas, grids or buildings / 图层")],
    out: Annotated[
        Path,
        typer.Argument(
            help="Output file: .geojson, .gpkg, .shp or .zip (zipped Shapefile) / 输出文件"
        ),
    ],
    crs: Annotated[str, typer.Option("--crs", help="Output CRS / 输出坐标系")] = "EPSG:4326",
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Grids in force at this time (ISO 8601; no zone = Asia/Shanghai) / 指定时刻",
        ),
    ] = None,
) -> None:
    """Export a layer to GeoJSON, GeoPackage or (zipped) Shapefile. 导出图层。"""
    with cli_errors():
        when = _parse_at(at)
        from gridmap import io
        from gridmap.db import session_scope

        _prepare_database()
        with session_scope() as session, _progress() as progress:
            progress(f"exporting {layer.value}", 0, 0)
            count = io.export_layer(
                session_or_connection=session, layer=layer.value, path=out, crs=crs, at=when
            )
        console.print(
            f"exported {count} {layer.value} to {escape(str(out))} ({escape(crs)}) / 已导出 {count} 条"
        )


# --------------------------------------------------------------------------------------------


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn every failure into one red line on stderr and exit 1 (GRIDMAP_DEBUG=1 re-raises)."""
    try:
        yield
    except typer.Exit:
        raise
    except GridmapError as exc:
        _fail(str(exc))
    except DBAPIError as exc:
        if os.environ.get("GRIDMAP_DEBUG"):
            raise
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "query failed"
        _fail(f"database error: {reason}")
    except Exception as exc:  # a bug: still one line, with the way to see the traceback
        if os.environ.get("GRIDMAP_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (set GRIDMAP_DEBUG=1 for a traceback)")


def _fail(message: str) -> NoReturn:
    first = " ".join(message.split())
    err_console.print(f"[bold red]error:[/] {escape(first)}", highlight=False)
    raise typer.Exit(1)


def _parse_at(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"Invalid value for --at: {value!r} is not an ISO 8601 date/time (e.g. 2024-07-01T08:00)"
        ) from None


def _parse_mapping(items: list[str] | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in items or []:
        target, sep, source = item.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise InvalidInput(
                f"Invalid value for --map: {item!r}; write TARGET=SOURCE, e.g. --map code=ADCODE"
            )
        mapping[target.strip()] = source.strip()
    return mapping


def _prepare_database() -> None:
    from gridmap.db import check_connection, get_engine
    from gridmap.migrate import require_current

    engine = get_engine()
    check_connection(engine)
    require_current(engine)


def _run_import(
    kind: io.LayerName,
    file: Path,
    map_: list[str] | None,
    *,
    layer: str | None,
    crs: str | None,
    force_crs: bool,
    encoding: str | None,
    skip_invalid: bool,
    rejects: Path | None,
    dry_run: bool,
    repair: bool,
    unknown_use: io.UnknownUse = "reject",
) -> None:
    with cli_errors():
        mapping = _parse_mapping(map_)
        if not file.exists():  # before touching the database: the commonest mistake, said plainly
            raise InvalidInput(f"{file} does not exist")
        from gridmap import io
        from gridmap.db import session_scope

        _prepare_database()
        with session_scope() as session, _progress() as progress:
            report = io.import_layer(
                session=session,
                layer=kind,
                path=file,
                mapping=mapping,
                source_layer=layer,
                crs=crs,
                force_crs=force_crs,
                encoding=encoding,
                skip_invalid=skip_invalid,
                dry_run=dry_run,
                repair=repair,
                unknown_use=unknown_use,
                rejects_path=rejects,
                progress=progress,
            )
        _print_report(report, rejects)
        if report.failed:
            verb = "would load nothing" if dry_run else "nothing was written"
            _fail(
                f"{verb}: {len(report.rejected)} of {report.read} rows rejected; fix them or pass "
                "--skip-invalid to load the valid rows / 存在无效行，未写入"
            )


def _print_report(report: io.ImportReport, rejects: Path | None) -> None:
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    title = f"{'dry run: ' if report.dry_run else ''}import {report.layer} ← {report.source}"
    table = Table(title=escape(title), show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("rows / 行数", justify="right")
    table.add_row("read / 读取", str(report.read))
    table.add_row("valid / 有效", str(report.valid))
    table.add_row("loaded / 已导入", str(report.loaded))
    table.add_row("rejected / 拒绝", f"[red]{len(report.rejected)}[/]" if report.rejected else "0")
    table.add_row("repaired / 已修复", str(report.repaired))
    if report.layer == "buildings":
        outside = "-" if report.outside_grid is None else str(report.outside_grid)
        table.add_row("outside every grid / 不在网格内", outside)
    table.add_row("seconds / 秒", f"{report.seconds:.1f}")
    console.print(table)
    if report.rejected:
        shown = Table(title="rejected rows / 被拒绝的行", header_style="bold")
        shown.add_column("row / 行", justify="right")
        shown.add_column("reason / 原因")
        for rejection in report.rejected[:SHOWN_REJECTS]:
            shown.add_row(str(rejection.row), escape(rejection.reason))
        console.print(shown)
        more = len(report.rejected) - SHOWN_REJECTS
        if more > 0:
            where = (
                f"; all of them are in {rejects}"
                if rejects
                else "; pass --rejects FILE to get all of them"
            )
            console.print(f"… and {more} more{escape(where)}")
        elif rejects:
            console.print(f"rejected rows written to {escape(str(rejects))}")


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display fed by gridmap.io's (step, done, total) callback."""
    display = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    tasks: dict[str, TaskID] = {}
    current: list[str] = []

    def update(step: str, done: int, total: int) -> None:
        if current and current[-1] != step:
            previous = tasks[current[-1]]
            display.update(
                previous,
                completed=display.tasks[previous].total or 1,
                total=display.tasks[previous].total or 1,
            )
        if step not in tasks:
            tasks[step] = display.add_task(step, total=total or None)
            current.append(step)
        display.update(tasks[step], completed=done, total=total or None)

    with display:
        yield update

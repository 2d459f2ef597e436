"""`gridmap stats refresh-coverage`: compute the city's patrol coverage ahead, for the map (cron)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console(soft_wrap=True)

stats_app = typer.Typer(help="Analytics computed ahead (统计): patrol coverage for the map. 巡查覆盖。", no_args_is_help=True)


@stats_app.callback()
def _group() -> None:
    """Analytics computed ahead (统计): patrol coverage for the map. 巡查覆盖。"""


@stats_app.command("refresh-coverage")
def refresh_coverage_command(
    days: Annotated[int, typer.Option(min=1, max=366, help="the tracks of the last this many days")] = 7,
    buffer: Annotated[float, typer.Option(min=1, max=1000, help="metres around the tracks that count as patrolled")] = 50.0,
) -> None:
    """Replace the coverage snapshot the map and the `gaps` tiles show (minutes for a city: run it from cron)."""
    import time

    from gridmap.db import session_scope
    from gridmap.services.stats import refresh_coverage

    started = time.monotonic()
    with console.status(f"computing the patrol coverage of every grid, last {days} days, {buffer:g} m …"), session_scope() as session:
        done = refresh_coverage(session, days=days, buffer_m=buffer)
    console.print(f"coverage of {done['grids']:,} grids ({done['since'][:10]} … {done['until'][:10]}, {buffer:g} m): "
                  f"mean {done['mean_covered_share'] or 0:.1%}, in {time.monotonic() - started:.1f} s")  # fmt: skip

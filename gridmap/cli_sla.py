"""`gridmap sla tick`: escalate overdue cases one level (超期自动升级); run it from cron or a timer."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.console import Console

from gridmap.errors import InvalidInput

console = Console(soft_wrap=True)

sla_app = typer.Typer(help="Case deadlines (时限): escalate overdue cases. 超期案件升级。", no_args_is_help=True)


@sla_app.callback()
def _group() -> None:
    """Case deadlines (时限): escalate overdue cases. 超期案件升级。"""


def sla_tick_command(
    now: Annotated[
        str | None,
        typer.Option(help="treat this ISO 8601 time (with zone) as now, e.g. to catch up after an outage; default: now"),
    ] = None,
) -> None:
    """Escalate every overdue case one level (grid → community → street → district); safe to repeat."""
    from gridmap.db import session_scope
    from gridmap.services.incidents import sla_tick

    at = None
    if now is not None:
        try:
            at = dt.datetime.fromisoformat(now)
        except ValueError:
            raise InvalidInput(f"invalid --now {now!r}: expected an ISO time like 2026-11-23T10:00:00+08:00") from None
        if at.tzinfo is None:
            raise InvalidInput(f"invalid --now {now!r}: give a time zone, e.g. 2026-11-23T10:00:00+08:00")
    with session_scope() as session:
        escalated = sla_tick(session, now=at)
    shown = ", ".join(str(i) for i in escalated[:20]) + (" …" if len(escalated) > 20 else "")
    console.print(f"escalated {len(escalated)} overdue incident(s)" + (f": {shown}" if escalated else ""))


sla_app.command("tick")(sla_tick_command)

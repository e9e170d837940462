"""A suite's `schedule`: a crontab line, or XrdTest's dict of cron fields.

Checked with APScheduler's `CronTrigger`, the scheduler the coordinator
runs, so what validates here is what will fire there.
"""

from __future__ import annotations

from typing import Any

FIELDS = ("year", "month", "day", "week", "day_of_week", "hour", "minute", "second")
CRONTAB = ("minute", "hour", "day", "month", "day_of_week")


class ScheduleError(ValueError):
    pass


def parse_schedule(value: Any) -> dict[str, str]:
    """Cron fields by APScheduler name; ScheduleError says what is wrong."""
    from apscheduler.triggers.cron import CronTrigger

    if isinstance(value, str):
        parts = value.split()
        if len(parts) != len(CRONTAB):
            raise ScheduleError(
                f"a crontab line has 5 fields (minute hour day month day_of_week), not {len(parts)}: {value!r}"
            )
        fields = dict(zip(CRONTAB, parts, strict=True))
    elif isinstance(value, dict):
        unknown = sorted(str(k) for k in value if k not in FIELDS)
        if unknown:
            raise ScheduleError(f"unknown cron fields {unknown} (known: {', '.join(FIELDS)})")
        if not value:
            raise ScheduleError("is empty; give at least one cron field")
        fields = {str(k): str(v) for k, v in value.items()}
    else:
        raise ScheduleError("must be a crontab line or a mapping of cron fields")
    try:
        CronTrigger(**fields, timezone="UTC")
    except (ValueError, TypeError) as exc:
        raise ScheduleError(f"not a valid schedule: {exc}") from None
    return fields

"""Maintenance windows (contract section 12.4): the ``mc/maintenance-window`` annotation of a pool,
parsed and evaluated against an instant.

Pure: no clock is read here; every function takes the instant it judges (an aware ``datetime``). Time
zones come from the standard library's ``zoneinfo`` (the system's tz database, or the ``tzdata``
package).

Grammar (day names and zone case as written below; days are case-insensitive)::

    schedule  := window { ";" window }          several windows; an instant in any of them is inside
    window    := days SPACE start "-" end SPACE zone
    days      := day-item { "," day-item }       Mon,Wed,Fri  or  Mon-Fri  or  Mon-Wed,Sat
    day-item  := day | day "-" day               a range may wrap: Fri-Mon is Fri, Sat, Sun, Mon
    day       := Mon | Tue | Wed | Thu | Fri | Sat | Sun   (or the full English name)
    start     := HH:MM                           00:00 to 23:59
    end       := HH:MM                           00:00 to 24:00
    zone      := an IANA time zone name: UTC, Europe/Paris, America/New_York ...

For example ``Mon-Fri 01:00-05:00 Europe/Paris; Sat,Sun 22:00-06:00 UTC``.

Meaning:

- The days name the day a window **opens**. An end at or before the start is on the next day, so
  ``Fri 22:00-02:00 UTC`` runs from Friday 22:00 to Saturday 02:00. ``00:00-24:00`` is a whole day; a
  start equal to the end is refused (it would be empty or a whole day; say which).
- Times are wall-clock times in the window's zone. Across daylight-saving changes: a time the clocks
  skip that day (spring forward) stands for the instant they jump, so ``02:00-03:00`` on that night is
  empty and ``01:00-05:00`` lasts three hours; a time the clocks show twice (fall back) is its first
  showing for a start and its second for an end, so a window covering the repeated hour lasts one
  hour longer.
- Windows that overlap or touch form one opening: ``Mon 22:00-24:00 UTC; Tue 00:00-02:00 UTC`` is
  open from Monday 22:00 to Tuesday 02:00 without a break.

Errors (:class:`WindowError`) name the window (its position and text) and the part that is wrong, and
say what to write instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo

UTC = dt.UTC

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NUMBER = {name.lower(): i for i, name in enumerate(DAYS)} | {n: i for i, n in enumerate(_FULL_DAYS)}
_TIMES = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")
_EXAMPLE = '"Mon-Fri 01:00-05:00 Europe/Paris"'
#: How far around an instant windows are laid out: a week either way covers every weekly window, and a
#: chain of touching windows is followed this far (further than any update needs to begin).
_HORIZON_DAYS = 9


class WindowError(ValueError):
    """The annotation cannot be parsed; the message names the window and the part that is wrong."""


@dataclasses.dataclass(frozen=True)
class Window:
    """One window: the days it opens on (0 = Monday), its start and end in minutes after midnight
    (the end may be ≤ the start: then it is on the next day), and its zone."""

    text: str
    days: frozenset[int]
    start: int
    end: int
    zone: zoneinfo.ZoneInfo

    def occurrences(self, around: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
        """(start, end) instants, in UTC, of the openings within :data:`_HORIZON_DAYS` of ``around``."""
        today = around.astimezone(self.zone).date()
        out = []
        for offset in range(-_HORIZON_DAYS, _HORIZON_DAYS + 1):
            day = today + dt.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            end_day = day if self.end > self.start else day + dt.timedelta(days=1)
            start = _instant(day, self.start, self.zone, last=False)
            end = _instant(end_day, self.end, self.zone, last=True)
            if start < end:  # a window inside a skipped hour is empty that day
                out.append((start, end))
        return out


@dataclasses.dataclass(frozen=True)
class Opening:
    """A stretch of time when some window is open: touching windows are merged into one."""

    start: dt.datetime
    end: dt.datetime
    #: The window that opens it (the first, when several open at once).
    window: Window

    def local_start(self) -> dt.datetime:
        """The start in the zone of the window that opens it (what a person reads in a message)."""
        return self.start.astimezone(self.window.zone)


@dataclasses.dataclass(frozen=True)
class Schedule:
    text: str
    windows: tuple[Window, ...]

    def openings(self, around: dt.datetime) -> list[Opening]:
        """The openings near ``around`` in time order, touching or overlapping windows merged."""
        _check_aware(around)
        spans = sorted(
            (start, end, i) for i, w in enumerate(self.windows) for start, end in w.occurrences(around)
        )
        merged: list[Opening] = []
        for start, end, i in spans:
            if merged and start <= merged[-1].end:
                if end > merged[-1].end:
                    merged[-1] = dataclasses.replace(merged[-1], end=end)
            else:
                merged.append(Opening(start, end, self.windows[i]))
        return merged

    def opening_at(self, at: dt.datetime) -> Opening | None:
        """The opening ``at`` is inside (start included, end excluded), or None."""
        return next((o for o in self.openings(at) if o.start <= at < o.end), None)

    def is_open(self, at: dt.datetime) -> bool:
        return self.opening_at(at) is not None

    def can_begin(self, at: dt.datetime, lead: dt.timedelta) -> bool:
        """Whether an update starting at ``at``, which needs ``lead`` before its disruptive step (the
        reboot) begins, gets there before the window ends."""
        opening = self.opening_at(at)
        return opening is not None and at + lead <= opening.end

    def next_opening(self, at: dt.datetime, lead: dt.timedelta = dt.timedelta(0)) -> Opening | None:
        """The first opening that starts after ``at`` and lasts at least ``lead``, or None when no
        window opens that long within a week."""
        for opening in self.openings(at):
            if opening.start > at and opening.end - opening.start >= lead:
                return opening
        return None


def parse(text: str) -> Schedule:
    """The schedule ``text`` describes (grammar in the module docstring); :class:`WindowError` if not."""
    if not text.strip():
        raise WindowError(f"is empty; write one or more windows such as {_EXAMPLE}, separated by ;")
    parts = text.split(";")
    return Schedule(text, tuple(_window(i, part.strip()) for i, part in enumerate(parts, 1)))


def _window(position: int, text: str) -> Window:
    where = f'window {position} ("{text}")' if text else f"window {position}"
    if not text:
        raise WindowError(f"{where} is empty; remove the extra ; or write a window such as {_EXAMPLE}")
    fields = text.split()
    if len(fields) == 2 and _TIMES.fullmatch(fields[1]):
        raise WindowError(f"{where} has no time zone; end it with one such as UTC or Europe/Paris")
    if len(fields) != 3:
        raise WindowError(f"{where} is not <days> <HH:MM-HH:MM> <time zone>; write it like {_EXAMPLE}")
    days_text, times_text, zone_text = fields
    days = _days(where, days_text)
    start, end = _times(where, times_text)
    return Window(text, days, start, end, _zone(where, zone_text))


def _days(where: str, text: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.split(","):
        ends = item.split("-")
        if len(ends) > 2 or not all(ends):
            raise WindowError(
                f'{where}: days "{item}" is not a day or a range; write e.g. Mon, Mon-Fri or Mon,Wed,Fri'
            )
        first, last = (_day(where, e) for e in (ends[0], ends[-1]))
        days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    return frozenset(days)


def _day(where: str, text: str) -> int:
    number = _DAY_NUMBER.get(text.lower())
    if number is None:
        raise WindowError(f'{where}: day "{text}" is not a day; use {", ".join(DAYS[:-1])} or Sun')
    return number


def _times(where: str, text: str) -> tuple[int, int]:
    match = _TIMES.fullmatch(text)
    if match is None:
        raise WindowError(f'{where}: times "{text}" are not HH:MM-HH:MM; write e.g. 01:00-05:00')
    sh, sm, eh, em = (int(g) for g in match.groups())
    if sh > 23 or sm > 59:
        raise WindowError(f'{where}: start "{match[1]}:{match[2]}" is not a time of day (00:00 to 23:59)')
    if eh > 24 or em > 59 or (eh == 24 and em):
        raise WindowError(f'{where}: end "{match[3]}:{match[4]}" is not a time of day (00:00 to 24:00)')
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        raise WindowError(
            f'{where}: times "{text}" start and end together; write 00:00-24:00 for a whole day, '
            "or give the window a length"
        )
    return start, end


def _zone(where: str, text: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(text)
    except (ValueError, LookupError, OSError):
        raise WindowError(
            f'{where}: time zone "{text}" is unknown; use an IANA name such as UTC, Europe/Paris '
            "or America/New_York"
        ) from None


def _instant(day: dt.date, minutes: int, zone: zoneinfo.ZoneInfo, *, last: bool) -> dt.datetime:
    """The UTC instant the clocks of ``zone`` show ``minutes`` after midnight of ``day``: for a time
    shown twice, the first showing (or the last when ``last``); for a skipped time, the jump."""
    naive = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minutes)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return first
    if first < second:  # shown twice (the clocks went back)
        return second if last else first
    return _jump(second, first, zone)


def _jump(before: dt.datetime, after: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The instant in (before, after] the offset of ``zone`` changes (zoneinfo does not list its
    transitions; they fall on whole seconds and a gap is an hour or so: a dozen halvings)."""
    lo, hi = int(before.timestamp()), int(after.timestamp())
    offset = _offset(hi, zone)
    while hi - lo > 1:
        middle = (lo + hi) // 2
        if _offset(middle, zone) == offset:
            hi = middle
        else:
            lo = middle
    return dt.datetime.fromtimestamp(hi, UTC)


def _offset(timestamp: int, zone: zoneinfo.ZoneInfo) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(timestamp, zone).utcoffset()


def _check_aware(at: dt.datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"instant {at.isoformat()} has no time zone: pass an aware datetime")

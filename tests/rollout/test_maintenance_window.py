"""Maintenance windows, pure: the grammar, its errors, and every instant judged across midnight, across
several windows and across daylight-saving changes in both directions, in Europe and in America."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcosup.model import maintenancewindow as mw

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# 2026-12-07 is a Monday. Europe/Paris springs forward on 2026-03-29 (02:00 CET -> 03:00 CEST, at
# 01:00 UTC) and falls back on 2026-10-25 (03:00 CEST -> 02:00 CET, at 01:00 UTC); America/New_York
# springs forward on 2026-03-08 (02:00 EST -> 03:00 EDT, at 07:00 UTC) and falls back on 2026-11-01
# (02:00 EDT -> 01:00 EST, at 06:00 UTC).
@pytest.mark.parametrize(
    ("schedule", "instant", "open_"),
    [
        # Week days, in a zone.
        ("Mon-Fri 01:00-05:00 Europe/Paris", "2026-12-07T00:59:59+01:00", False),
        ("Mon-Fri 01:00-05:00 Europe/Paris", "2026-12-07T01:00:00+01:00", True),
        ("Mon-Fri 01:00-05:00 Europe/Paris", "2026-12-07T00:00:00+00:00", True),
        ("Mon-Fri 01:00-05:00 Europe/Paris", "2026-12-07T04:59:59+01:00", True),
        ("Mon-Fri 01:00-05:00 Europe/Paris", "2026-12-07T05:00:00+01:00", False),
        ("Mon-Fri 01:00-05:00 Europe/Paris", "2026-12-12T02:00:00+01:00", False),  # Saturday
        ("mon-fri 01:00-05:00 Europe/Paris", "2026-12-11T02:00:00+01:00", True),  # Friday; any case
        ("Monday 01:00-05:00 UTC", "2026-12-07T02:00:00+00:00", True),
        # Lists, wrapping ranges, whole days.
        ("Mon,Wed 12:00-13:00 UTC", "2026-12-09T12:30:00+00:00", True),
        ("Mon,Wed 12:00-13:00 UTC", "2026-12-08T12:30:00+00:00", False),
        ("Fri-Mon 00:00-24:00 UTC", "2026-12-13T12:00:00+00:00", True),  # Sunday
        ("Fri-Mon 00:00-24:00 UTC", "2026-12-08T12:00:00+00:00", False),  # Tuesday
        ("Mon-Wed,Sat 00:00-24:00 UTC", "2026-12-12T23:59:00+00:00", True),
        # Across midnight: the day is the day it opens.
        ("Fri 22:00-02:00 UTC", "2026-12-11T21:59:00+00:00", False),
        ("Fri 22:00-02:00 UTC", "2026-12-11T23:00:00+00:00", True),
        ("Fri 22:00-02:00 UTC", "2026-12-12T01:59:00+00:00", True),
        ("Fri 22:00-02:00 UTC", "2026-12-12T02:00:00+00:00", False),
        ("Fri 22:00-02:00 UTC", "2026-12-11T01:00:00+00:00", False),  # Thursday night: not Fri's
        ("Sun 23:00-01:00 UTC", "2026-12-07T00:30:00+00:00", True),  # Sunday's, into Monday
        # Several windows, in several zones.
        ("Mon 01:00-02:00 UTC; Wed 10:00-11:00 America/New_York", "2026-12-07T01:30:00+00:00", True),
        ("Mon 01:00-02:00 UTC; Wed 10:00-11:00 America/New_York", "2026-12-09T15:30:00+00:00", True),
        ("Mon 01:00-02:00 UTC; Wed 10:00-11:00 America/New_York", "2026-12-09T10:30:00+00:00", False),
        # Europe, spring forward: 01:00-05:00 lasts three hours; 02:00-03:00 does not exist that night.
        ("Sun 01:00-05:00 Europe/Paris", "2026-03-29T00:00:00+00:00", True),
        ("Sun 01:00-05:00 Europe/Paris", "2026-03-29T02:59:59+00:00", True),
        ("Sun 01:00-05:00 Europe/Paris", "2026-03-29T03:00:00+00:00", False),
        ("Sun 02:00-03:00 Europe/Paris", "2026-03-29T01:00:00+00:00", False),
        ("Sun 02:00-03:00 Europe/Paris", "2026-03-29T00:30:00+00:00", False),
        ("Sun 02:00-03:00 Europe/Paris", "2026-03-22T01:30:00+00:00", True),  # a week before: normal
        # Europe, fall back: the repeated hour is inside twice.
        ("Sun 02:00-03:00 Europe/Paris", "2026-10-24T23:59:59+00:00", False),
        ("Sun 02:00-03:00 Europe/Paris", "2026-10-25T00:00:00+00:00", True),  # 02:00 CEST
        ("Sun 02:00-03:00 Europe/Paris", "2026-10-25T01:30:00+00:00", True),  # 02:30 CET
        ("Sun 02:00-03:00 Europe/Paris", "2026-10-25T02:00:00+00:00", False),  # 03:00 CET
        # America, spring forward: a start the clocks skip is the jump.
        ("Sun 02:00-04:00 America/New_York", "2026-03-08T06:59:59+00:00", False),
        ("Sun 02:00-04:00 America/New_York", "2026-03-08T07:00:00+00:00", True),
        ("Sun 02:00-04:00 America/New_York", "2026-03-08T07:59:59+00:00", True),
        ("Sun 02:00-04:00 America/New_York", "2026-03-08T08:00:00+00:00", False),
        # America, fall back: 01:00-02:00 runs from the first 01:00 (EDT) to 02:00 EST.
        ("Sun 01:00-02:00 America/New_York", "2026-11-01T04:59:59+00:00", False),
        ("Sun 01:00-02:00 America/New_York", "2026-11-01T05:00:00+00:00", True),
        ("Sun 01:00-02:00 America/New_York", "2026-11-01T06:30:00+00:00", True),  # 01:30 EST
        ("Sun 01:00-02:00 America/New_York", "2026-11-01T07:00:00+00:00", False),
    ],
)
def test_an_instant_is_inside_or_outside(schedule: str, instant: str, open_: bool) -> None:
    assert mw.parse(schedule).is_open(at(instant)) is open_


@pytest.mark.parametrize(
    ("schedule", "instant", "lead_minutes", "begins"),
    [
        ("Mon 01:00-05:00 UTC", "2026-12-07T04:30:00+00:00", 30, True),  # ends exactly as it closes
        ("Mon 01:00-05:00 UTC", "2026-12-07T04:31:00+00:00", 30, False),
        ("Mon 01:00-05:00 UTC", "2026-12-07T00:59:00+00:00", 0, False),  # not open yet
        ("Mon 01:00-05:00 UTC", "2026-12-07T01:00:00+00:00", 240, True),
        ("Mon 01:00-05:00 UTC", "2026-12-07T01:00:00+00:00", 241, False),
        # Touching windows are one opening, even across midnight and across zones.
        ("Mon 22:00-24:00 UTC; Tue 00:00-02:00 UTC", "2026-12-07T23:50:00+00:00", 120, True),
        ("Mon 22:00-24:00 UTC; Tue 01:00-03:00 Europe/Paris", "2026-12-07T23:50:00+00:00", 120, True),
        ("Mon 22:00-24:00 UTC; Tue 00:30-02:00 UTC", "2026-12-07T23:50:00+00:00", 60, False),
        # The spring-forward night is shorter: a 4-hour lead no longer fits, 3 hours does.
        ("Sun 01:00-05:00 Europe/Paris", "2026-03-29T00:00:00+00:00", 240, False),
        ("Sun 01:00-05:00 Europe/Paris", "2026-03-29T00:00:00+00:00", 180, True),
        # The fall-back night is longer.
        ("Sun 01:00-05:00 America/New_York", "2026-11-01T05:00:00+00:00", 300, True),
    ],
)
def test_an_update_starting_now_begins_before_the_window_ends(
    schedule: str, instant: str, lead_minutes: int, begins: bool
) -> None:
    assert mw.parse(schedule).can_begin(at(instant), lead_minutes * MINUTE) is begins


@pytest.mark.parametrize(
    ("schedule", "instant", "lead_minutes", "next_start"),
    [
        ("Mon-Fri 01:00-05:00 Europe/Paris", "2026-12-05T12:00:00+00:00", 0, "2026-12-07T01:00:00+01:00"),
        # Inside a window: the next one after it.
        ("Mon-Fri 01:00-05:00 Europe/Paris", "2026-12-07T02:00:00+01:00", 0, "2026-12-08T01:00:00+01:00"),
        ("Fri 22:00-02:00 UTC", "2026-12-12T01:00:00+00:00", 0, "2026-12-18T22:00:00+00:00"),
        # The earliest of several windows, shown in its own zone.
        (
            "Wed 10:00-11:00 America/New_York; Thu 00:00-01:00 UTC",
            "2026-12-08T12:00:00+00:00",
            0,
            "2026-12-09T10:00:00-05:00",
        ),
        # Spring forward: a skipped start opens at the jump (03:00 EDT).
        ("Sun 02:00-04:00 America/New_York", "2026-03-07T12:00:00+00:00", 0, "2026-03-08T03:00:00-04:00"),
        # Fall back: a repeated start opens at its first showing (EDT).
        ("Sun 01:00-02:00 America/New_York", "2026-10-31T12:00:00+00:00", 0, "2026-11-01T01:00:00-04:00"),
        # An opening shorter than the lead is skipped: the Paris spring-forward night is empty.
        ("Sun 02:00-03:00 Europe/Paris", "2026-03-28T12:00:00+00:00", 0, "2026-04-05T02:00:00+02:00"),
        (
            "Sat 04:00-04:10 UTC; Sun 04:00-05:00 UTC",
            "2026-12-12T00:00:00+00:00",
            30,
            "2026-12-13T04:00:00+00:00",
        ),
    ],
)
def test_next_window_start(schedule: str, instant: str, lead_minutes: int, next_start: str) -> None:
    opening = mw.parse(schedule).next_opening(at(instant), lead_minutes * MINUTE)
    assert opening is not None
    assert opening.local_start().isoformat() == next_start


def test_a_window_always_open_has_no_next_start_and_any_update_begins() -> None:
    schedule = mw.parse("Mon-Sun 00:00-24:00 UTC")
    now = at("2026-12-07T23:50:00+00:00")
    assert schedule.next_opening(now) is None
    assert schedule.can_begin(now, dt.timedelta(days=2))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty; write one or more windows"),
        ("   ", "is empty"),
        ("Mon-Fry 01:00-05:00 UTC", 'window 1 ("Mon-Fry 01:00-05:00 UTC"): day "Fry" is not a day; use Mon'),
        (
            "Mon 01:00-05:00 UTC; Tue 1:00-5 UTC",
            'window 2 ("Tue 1:00-5 UTC"): times "1:00-5" are not HH:MM-HH:MM',
        ),
        ("Mon 01:00-05:00", 'window 1 ("Mon 01:00-05:00") has no time zone; end it with one such as UTC'),
        ("Mon 01:00-05:00 Europe/Pari", 'time zone "Europe/Pari" is unknown; use an IANA name'),
        ("Mon 01:00-05:00 ../../etc/passwd", 'time zone "../../etc/passwd" is unknown'),
        ("Mon 01:00-05:00 America", 'time zone "America" is unknown'),
        ("Mon 24:00-05:00 UTC", 'start "24:00" is not a time of day (00:00 to 23:59)'),
        ("Mon 01:00-24:30 UTC", 'end "24:30" is not a time of day (00:00 to 24:00)'),
        ("Mon 01:61-05:00 UTC", 'start "01:61" is not a time of day'),
        (
            "Mon 03:00-03:00 UTC",
            'times "03:00-03:00" start and end together; write 00:00-24:00 for a whole day',
        ),
        ("Mon 01:00-05:00 UTC;", "window 2 is empty; remove the extra ;"),
        ("Mon;Tue 01:00-05:00 UTC", 'window 1 ("Mon") is not <days> <HH:MM-HH:MM> <time zone>'),
        ("Mon-Tue-Wed 01:00-05:00 UTC", 'days "Mon-Tue-Wed" is not a day or a range'),
        ("Mon,,Tue 01:00-05:00 UTC", 'days "" is not a day or a range'),
        ("Mon 01:00-05:00 UTC extra", "is not <days> <HH:MM-HH:MM> <time zone>"),
    ],
)
def test_bad_input_names_the_window_and_the_part(text: str, message: str) -> None:
    with pytest.raises(mw.WindowError) as exc:
        mw.parse(text)
    assert message in str(exc.value)


def test_an_instant_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="has no time zone"):
        mw.parse("Mon 01:00-05:00 UTC").is_open(dt.datetime(2026, 12, 7, 2))


# Properties.


@given(st.text(max_size=80))
def test_any_text_parses_or_gets_a_window_error(text: str) -> None:
    try:
        mw.parse(text)
    except mw.WindowError as exc:
        assert str(exc)


_ZONES = ("UTC", "Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Kolkata")


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


_windows = st.builds(
    lambda days, start, length, zone: (
        f"{','.join(mw.DAYS[d] for d in sorted(days))} {_hhmm(start)}-{_hhmm(start + length)} {zone}"
    ),
    st.sets(st.integers(0, 6), min_size=1),
    st.integers(0, 23 * 60 + 59),
    st.integers(1, 23 * 60),
    st.sampled_from(_ZONES),
)
_instants = st.datetimes(
    min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2028, 12, 31), timezones=st.just(UTC)
)


@given(st.lists(_windows, min_size=1, max_size=3), _instants)
def test_the_next_start_is_the_first_open_instant_after_now(windows: list[str], now: dt.datetime) -> None:
    schedule = mw.parse("; ".join(windows))
    opening = schedule.next_opening(now)
    if opening is None:
        return  # open from now on for the whole horizon
    assert opening.start > now
    assert schedule.is_open(opening.start)
    assert not schedule.is_open(opening.start - dt.timedelta(seconds=1))
    if not schedule.is_open(now):
        # Nothing opens in between: the middle of the gap is closed too.
        assert not schedule.is_open(now + (opening.start - now) / 2)


@given(st.lists(_windows.filter(lambda w: w.endswith(" UTC")), min_size=1, max_size=3), _instants)
def test_in_utc_inside_means_the_wall_clock_is_between_start_and_end(
    windows: list[str], now: dt.datetime
) -> None:
    def inside(window: mw.Window) -> bool:
        minute = now.hour * 60 + now.minute
        if window.end > window.start:
            return now.weekday() in window.days and window.start <= minute < window.end
        yesterday = (now.weekday() - 1) % 7
        return (now.weekday() in window.days and minute >= window.start) or (
            yesterday in window.days and minute < window.end
        )

    schedule = mw.parse("; ".join(windows))
    assert schedule.is_open(now) is any(inside(w) for w in schedule.windows)

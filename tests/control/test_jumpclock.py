"""The clock tests move forward at once: a jump ends the waits it passes, and moves the wall time too."""

from __future__ import annotations

import asyncio

from mcosup.control.clock import JumpClock


async def test_a_jump_ends_the_waits_it_passes_and_moves_the_wall_clock() -> None:
    clock = JumpClock(wall=1_000_000.0)
    wall, now = clock.wall(), clock.now()
    long_wait = asyncio.create_task(clock.wait(asyncio.Event(), 3600))
    longer_wait = asyncio.create_task(clock.wait(asyncio.Event(), 7200))
    await asyncio.sleep(0)
    clock.jump(3600)
    await long_wait
    assert not longer_wait.done()
    assert clock.wall() - wall >= 3600 and clock.now() - now >= 3600
    event = asyncio.Event()
    event.set()
    await clock.wait(event, 7200)  # an event set ends a wait at once, as with the real clock
    longer_wait.cancel()
    await asyncio.gather(longer_wait, return_exceptions=True)

"""The policy that adds range streams to a file while each one added raises its throughput."""

from __future__ import annotations

from phaita.loader.transfer.stream_growth import StreamGrowth


def feed(growth: StreamGrowth, per_stream: float, link: float, seconds: float, base: int = 8) -> list[int]:
    """Run ``growth`` against a link that gives each stream ``per_stream`` bytes/s and ``link`` in all;
    every allowed stream runs. The limits it allowed, tick by tick (0.1 s)."""
    now, received, limits = 0.0, 0.0, []
    while now < seconds:
        running = growth.limit(base)
        limits.append(running)
        received += min(per_stream * running, link) * 0.1
        growth.observe(now, int(received), running, base)
        now += 0.1
    return limits


def test_streams_grow_to_the_ceiling_while_each_connection_is_capped():
    growth = StreamGrowth(start=8, ceiling=16, step=4)
    limits = feed(growth, per_stream=20e6, link=1e12, seconds=6)
    assert limits[0] == 8 and limits[-1] == 16 and sorted(limits) == limits
    assert growth.done


def test_streams_stop_growing_when_the_link_is_full():
    growth = StreamGrowth(start=8, ceiling=16, step=4)
    limits = feed(growth, per_stream=20e6, link=200e6, seconds=6)  # 10 streams fill it
    assert max(limits) == 12 and limits[-1] == 12 and growth.done  # 12 helped (160 -> 200), 16 would not
    growth = StreamGrowth(start=8, ceiling=16, step=4)
    assert max(feed(growth, per_stream=1e9, link=1e9, seconds=6)) == 12  # one stream fills it: tried once


def test_a_window_with_fewer_streams_than_allowed_measures_nothing():
    growth = StreamGrowth(start=8, ceiling=16, step=4)
    for tick in range(60):  # streams keep ending and starting again: never all 8 for a whole second
        growth.observe(tick * 0.1, tick * 1_000_000, 8 if tick % 5 else 7, 8)
    assert growth.limit(8) == 8 and not growth.done


def test_growth_ends_for_good_once_the_link_lowers_its_streams():
    growth = StreamGrowth(start=8, ceiling=16, step=4)
    feed(growth, per_stream=20e6, link=1e12, seconds=1.5)
    assert growth.limit(8) == 12
    assert growth.limit(3) == 3  # a 429 or resets: the server's limit
    assert growth.done and growth.limit(8) == 8


def test_one_stream_or_no_room_never_grows():
    assert feed(StreamGrowth(start=1, ceiling=16), per_stream=1e6, link=1e12, seconds=4, base=1) == [1] * 40
    assert set(feed(StreamGrowth(start=8, ceiling=8), per_stream=1e6, link=1e12, seconds=4)) == {8}

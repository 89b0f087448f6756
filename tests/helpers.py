"""Helpers shared by the test suites (one place for what several test files need)."""


def random_stream_config(rng, *, min_lanes=1):
    """A random weight-stream geometry for the codec and decoder tests (``rng``: ``random.Random``):
    rows 1..16, lanes ``min_lanes``..64, bus_bytes 1..32, either weight format; the rest default."""
    from hw.config import TernConfig
    return TernConfig(rows=rng.randint(1, 16), lanes=rng.randint(min_lanes, 64),
                      bus_bytes=rng.randint(1, 32), weight_format=rng.choice(["2bit", "base3"]))

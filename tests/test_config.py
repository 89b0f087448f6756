import json

import pytest

from hw.config import ConfigError, TernConfig, check_int


def test_defaults_and_derived_geometry():
    c = TernConfig()
    assert (c.rows, c.lanes, c.acc_width, c.weight_format, c.bus_bytes) == (16, 64, 32, "2bit", 16)
    # |dot| <= 128 * 64 = 8192 needs 14 magnitude bits + sign
    assert c.dot_width == 15
    assert c.tree_levels == 6
    assert c.word_trits == 1024
    assert c.trits_per_beat == 64
    assert c.beats_per_word == 16
    assert c.stream_efficiency == 1.0
    assert c.max_k == 512 * 64
    assert c.max_k_exact == (2**31 - 1) // 128


@pytest.mark.parametrize("lanes,width", [(1, 9), (2, 10), (3, 10), (4, 11), (63, 14), (64, 15), (65, 15), (256, 17)])
def test_dot_width_holds_extremes(lanes, width):
    c = TernConfig(lanes=lanes, acc_width=32)
    assert c.dot_width == width
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1) - 1
    assert lo <= -128 * lanes and 128 * lanes <= hi
    # and one bit fewer would not do
    assert 128 * lanes > 2 ** (width - 2) - 1


def tree_register_bits(lanes, tree_reg_every):
    return TernConfig(lanes=lanes, tree_reg_every=tree_reg_every).tree_register_bits


def test_tree_register_placement():
    # lanes 8: levels 1, 2, 3 with 4, 2, 1 nodes of dot_width 10, 11, 12 bits
    assert tree_register_bits(8, 0) == 0
    assert tree_register_bits(8, 1) == 4 * 10 + 2 * 11 + 12
    assert tree_register_bits(8, 2) == 2 * 11              # after level 2 only
    assert tree_register_bits(8, 4) == 0                   # 3 levels < 4
    # odd lanes: 5 -> 3 nodes (2,2,1) -> 2 nodes (4,1) -> 1 node (5); the odd node passes through at
    # its own width; dot_width(5) = bit_length(640) + 1 = 11
    assert tree_register_bits(5, 1) == (10 + 10 + 9) + (11 + 9) + 11


def test_base3_geometry_pads_last_beat():
    c = TernConfig(weight_format="base3")
    assert c.trits_per_beat == 80
    assert c.beats_per_word == 13  # ceil(1024 / 80)
    assert c.stream_efficiency == pytest.approx(1024 / 1040)


def test_frozen():
    c = TernConfig()
    with pytest.raises(AttributeError):
        c.rows = 4


@pytest.mark.parametrize("kw,needle", [
    ({"rows": 0}, "rows must be between 1 and 256, not 0"),
    ({"lanes": 300}, "lanes must be between 1 and 256, not 300"),
    ({"rows": 2.5}, "rows must be an integer, not 2.5"),
    ({"rows": True}, "rows must be an integer, not True"),
    ({"weight_format": "3bit"}, "weight_format must be one of 2bit, base3, not '3bit'"),
    ({"act_depth": 1000}, "act_depth must be a power of two, not 1000"),
    ({"acc_width": 8}, "acc_width must be between 15 and 64, not 8"),
    ({"acc_width": 65}, "acc_width must be between 15 and 64, not 65"),
    ({"tree_reg_every": -1}, "tree_reg_every must be between 0 and 16, not -1"),
])
def test_rejects_bad_values(kw, needle):
    with pytest.raises(ConfigError) as e:
        TernConfig(**kw)
    assert needle in str(e.value)


def test_toml_round_trip_and_errors(tmp_path):
    p = tmp_path / "acc.toml"
    p.write_text('rows = 8\nlanes = 32\nweight_format = "base3"\n')
    c = TernConfig.from_toml(p)
    assert (c.rows, c.lanes, c.weight_format, c.bus_bytes) == (8, 32, "base3", 16)
    p.write_text('[accelerator]\nrows = 4\n')
    assert TernConfig.from_toml(p).rows == 4
    assert TernConfig.from_dict(json.loads(c.to_json())) == c

    p.write_text("rows = 8\nbogus = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'bogus'"):
        TernConfig.from_toml(p)
    p.write_text("rows = = 8\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        TernConfig.from_toml(p)
    p.write_text("rows = 0\n")
    with pytest.raises(ConfigError, match=r"acc.toml: rows must be between"):
        TernConfig.from_toml(p)
    with pytest.raises(ConfigError, match="no such configuration file"):
        TernConfig.from_toml(tmp_path / "missing.toml")


def test_check_int_is_the_one_integer_check():
    check_int("n", 4, 1, 8, power_of_two=True)
    check_int("n", 10**9, 1)                                        # open upper bound
    for value, needle in [(True, "n must be an integer, not True"), (0, "n must be at least 1, not 0"),
                          (2.0, "n must be an integer, not 2.0")]:
        with pytest.raises(ConfigError, match=needle):
            check_int("n", value, 1)
    with pytest.raises(ConfigError, match="n must be at most 3, not 4"):
        check_int("n", 4, hi=3)
    with pytest.raises(KeyError, match="n must be a power of two, not 6"):
        check_int("n", 6, 1, 8, power_of_two=True, error=KeyError)


def test_perf_counter_fields():
    from hw.config import PERF_COUNTERS, ConfigError
    assert TernConfig().perf_counters == PERF_COUNTERS and TernConfig().perf_width == 48
    c = TernConfig(perf_counters=["wgt_beats", "cycles"], perf_width=16)
    assert c.perf_counters == ("cycles", "wgt_beats")            # PERF_COUNTERS order, a tuple
    assert TernConfig.from_dict(json.loads(c.to_json())) == c
    for bad, msg in [(dict(perf_counters="cycles"), "list of counter names"),
                     (dict(perf_counters=["busy"]), "include 'cycles'"),
                     (dict(perf_counters=["cycles", "nope"]), "unknown counter 'nope'"),
                     (dict(perf_counters=["cycles", "cycles"]), "twice"),
                     (dict(perf_width=15), "perf_width"), (dict(perf_width=65), "perf_width")]:
        with pytest.raises(ConfigError, match=msg):
            TernConfig(**bad)


def test_latencies_are_config_facts():
    """The check pipeline grows with log2(wgt_depth); every latency of the result path adds up."""
    assert [TernConfig(wgt_depth=d).check_stages for d in (4, 16, 64, 512, 65536)] == [2, 3, 3, 4, 5]
    c = TernConfig()
    assert c.dispatch_latency == c.check_stages + 3
    assert c.result_latency == c.ram_latency + c.operand_latency + c.pe_latency + c.out_fifo_latency

"""hw.estimate.host: the host's bytes and operations per token of 2b4t, counted by hand."""

from hw.estimate.host import host_work
from hw.estimate.model import ModelShape

M = ModelShape("2b4t", [("q", 2560, 2560), ("k", 640, 2560), ("v", 640, 2560), ("o", 2560, 2560),
                        ("gate", 6912, 2560), ("up", 6912, 2560), ("down", 2560, 6912)],
               layers=30, vocab_size=128256, hidden_size=2560, num_heads=20, num_kv_heads=5, head_dim=128,
               intermediate_size=6912)
BUS = {"act": 1000, "out": 2000, "instr": 64, "wgt": 10**9}


def test_lm_head_and_kv_cache_of_2b4t():
    w = host_work(M, context=0, tokens=1, core_bus_bytes_per_token=BUS)
    assert w["lm_head"]["bytes"] == 656_670_720            # 128256 x 2560 x 2 bytes: 657 MB
    assert w["lm_head"]["macs"] == 328_335_360
    # 30 layers x (K and V) x 5 heads x 128 x 2 bytes = 76,800 bytes per position (about 77 KB)
    assert w["kv_cache"]["bytes"] == 76_800                # context 0: only the new token's K and V
    w = host_work(M, context=1000, tokens=1, core_bus_bytes_per_token=BUS)
    assert w["kv_cache"]["bytes"] == 76_800 * 1001
    assert w["attention"]["macs"] == 30 * 2 * 2560 * 1001
    assert w["embedding"]["bytes"] == 5120
    assert w["host_transfers"]["bytes"] == 3064             # the weights are not the host's


def test_prefill_shares_the_weights_not_the_per_token_work():
    d = host_work(M, context=512, tokens=1, core_bus_bytes_per_token=BUS)
    p = host_work(M, context=512, tokens=8, core_bus_bytes_per_token=BUS)
    assert p["lm_head"]["bytes"] == d["lm_head"]["bytes"] / 8
    assert p["lm_head"]["macs"] == d["lm_head"]["macs"]
    assert p["kv_cache"]["bytes"] == 76_800 * (512 / 8 + 1)
    assert p["embedding"] == d["embedding"]


def test_sub_norms_count():
    no = ModelShape(**{**M.__dict__, "sub_norms": False})
    a = host_work(M, context=0, tokens=1, core_bus_bytes_per_token=BUS)["norms"]["macs"]
    b = host_work(no, context=0, tokens=1, core_bus_bytes_per_token=BUS)["norms"]["macs"]
    assert a == 30 * (3 * 2560 + 6912) + 2560
    assert b == 30 * 2 * 2560 + 2560

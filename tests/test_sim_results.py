"""hw.sim.results: the values the simulator computes, bit-exact against the numpy int64 reference
(hw.program), including accumulator wrap, K not a multiple of lanes and invalid weight bytes; a
2B4T-sized projection and a whole 2B4T layer at T=1 against an int64 reference of the decoded weight
stream."""

import numpy as np
import pytest

from hw.config import TernConfig
from hw.formats import BYTE_VALID, stream_to_weight_words
from hw.program import ProgramBuilder, linear_program, outputs_to_matrix, reference_matmul, wrap_signed
from hw.sim import simulate
from hw.timing import Timing
from hw.workloads import layer_streams, tokens_per_group
from sw.model.presets import layer_shapes


@pytest.mark.parametrize("seed", range(6))
def test_linear_program_bit_exact(seed):
    rng = np.random.default_rng(seed)
    cfg = TernConfig(rows=int(rng.integers(1, 9)), lanes=int(rng.choice([4, 5, 16, 13])),
                     weight_format=str(rng.choice(["2bit", "base3"])), bus_bytes=int(rng.choice([1, 4, 8])),
                     act_depth=128, wgt_depth=16, out_depth=int(rng.integers(2, 7)))
    cfg = cfg.replace(acc_width=cfg.dot_width)   # sums of several words wrap
    T, N = int(rng.integers(1, 9)), int(rng.integers(1, 20))
    K = int(rng.integers(1, cfg.lanes * 6))        # rarely a multiple of lanes
    q = rng.integers(-128, 128, (T, K))
    w = rng.integers(-1, 2, (N, K))
    prog = linear_program(cfg, q, w)
    r = simulate(cfg, prog, Timing.random(seed, p_instr=0.2, p_act=0.3, p_wgt=0.3, p_out=0.4))
    d = outputs_to_matrix(cfg, r.outputs, T, N)
    assert np.array_equal(d, wrap_signed(reference_matmul(q, w), cfg.acc_width))
    assert r.error == 0


def test_many_tokens_wrapping_extreme_values():
    cfg = TernConfig(rows=4, lanes=8, act_depth=512, wgt_depth=8, out_depth=2, acc_width=12)
    T, K = 100, 20
    q = np.full((T, K), -128)
    q[::3] = 127
    w = np.ones((7, K), dtype=int)
    w[1] = -1
    prog = linear_program(cfg, q, w)
    r = simulate(cfg, prog, Timing.random(3, p_out=0.5))
    assert np.array_equal(outputs_to_matrix(cfg, r.outputs, T, 7),
                          wrap_signed(reference_matmul(q, w), 12))


@pytest.mark.parametrize("fmt", ["2bit", "base3"])
def test_invalid_weight_byte_reads_zero(fmt):
    cfg = TernConfig(rows=2, lanes=5, weight_format=fmt, bus_bytes=2, act_depth=16, wgt_depth=4)
    rng = np.random.default_rng(0)
    b = ProgramBuilder(cfg).load_act(0, rng.integers(-128, 128, (2, 5)))
    tile = rng.integers(-1, 2, (2, 10))
    tile[0, :5] = 1   # the byte we spoil carries only row 0, lanes 0..3 (2bit) / 0..4 (base3)
    b.matmul(0, tile, 1)
    prog = b.build()
    beats = prog.wgt_beats.copy()
    beats[0, 0] = 0xFF if fmt == "2bit" else 250
    r = simulate(cfg, prog, wgt_beats=beats)
    spoiled = tile.copy()
    spoiled[0, :4 if fmt == "2bit" else 5] = 0
    exp = reference_matmul(np.concatenate(list(prog.act_beats)).reshape(1, 10), spoiled)
    assert np.array_equal(r.outputs, exp)
    assert r.error == 2


def test_2b4t_projection_bit_exact_against_builder_reference():
    cfg = TernConfig()
    rng = np.random.default_rng(5)
    q = rng.integers(-128, 128, (3, 2560))
    w = rng.integers(-1, 2, (640, 2560))
    prog = linear_program(cfg, q, w)
    r = simulate(cfg, prog)
    assert np.array_equal(outputs_to_matrix(cfg, r.outputs, 3, 640), reference_matmul(q, w))
    assert r.counters["busy"] == 40 * 3 * 40


def test_2b4t_layer_t1_bit_exact():
    """All seven projections of a 2B4T layer in one program; the reference decodes each
    projection's weight stream with hw.formats and multiplies in int64."""
    cfg = TernConfig()
    st, n_out = layer_streams(cfg, 1, layer_shapes("2b4t"), np.random.default_rng(0))
    r = simulate(cfg, words=st.words, act_beats=st.act_beats, wgt_beats=st.wgt_beats)
    assert r.outputs.shape == (n_out, cfg.rows)
    L, R, bpw = cfg.lanes, cfg.rows, cfg.beats_per_word
    a = b = o = 0
    for _, N, K in layer_shapes("2b4t"):
        kw, tiles = K // L, N // R
        assert tokens_per_group(cfg, K) >= 1
        x = st.act_beats[a:a + kw].reshape(1, K).astype(np.int64)
        wds = stream_to_weight_words(st.wgt_beats[b:b + tiles * kw * bpw], cfg)   # (tiles*kw, R, L)
        wmat = wds.reshape(tiles, kw, R, L).transpose(0, 2, 1, 3).reshape(N, K).astype(np.int64)
        assert np.array_equal(r.outputs[o:o + tiles].reshape(N), (x @ wmat.T).reshape(N))
        a, b, o = a + kw, b + tiles * kw * bpw, o + tiles
    # decode is weight-bus bound: the stream runs at one beat per cycle
    assert r.counters["wgt_beats"] / r.cycles > 0.99


@pytest.mark.parametrize("fmt, rows, lanes, bus_bytes", [
    ("2bit", 3, 4, 2), ("2bit", 2, 5, 2), ("base3", 2, 5, 3), ("base3", 2, 4, 3)])
def test_error_bit_1_is_the_formats_validity_table(fmt, rows, lanes, bus_bytes):
    """Every byte value, in a byte that carries weights and in a padding byte (lanes a multiple of
    the codes per byte or not): error bit 1 is set exactly when the byte is not BYTE_VALID, and the
    results are those of the decoded weights."""
    cfg = TernConfig(rows=rows, lanes=lanes, weight_format=fmt, bus_bytes=bus_bytes, act_depth=16,
                     wgt_depth=4)
    words_bytes = -(-rows * lanes // cfg.trits_per_byte)
    assert cfg.beats_per_word * bus_bytes > words_bytes           # the word has a padding byte
    rng = np.random.default_rng(1)
    b = ProgramBuilder(cfg).load_act(0, rng.integers(-128, 128, (2, lanes)))
    b.matmul(0, rng.integers(-1, 2, (rows, 2 * lanes)), 1)
    prog = b.build()
    x = np.concatenate(list(prog.act_beats)).reshape(1, 2 * lanes)
    for pos in ((0, 0), (-1, -1)):           # first byte of the first word, last (padding) byte
        for byte in range(256):
            beats = prog.wgt_beats.copy()
            beats[pos] = byte
            r = simulate(cfg, prog, wgt_beats=beats)
            assert r.error == (0 if BYTE_VALID[fmt][byte] else 2), (pos, byte)
            words = stream_to_weight_words(beats, cfg, strict=False)          # (2, rows, lanes)
            tile = words.transpose(1, 0, 2).reshape(rows, 2 * lanes)
            assert np.array_equal(r.outputs, reference_matmul(x, tile)), (pos, byte)


@pytest.mark.parametrize("fmt", ["2bit", "base3"])
def test_invalid_byte_test_is_the_validity_table(fmt):
    """hw.sim.results.invalid_bytes, for every byte value alone and at every position of a run of
    valid bytes of each length 1..24 (the eight-bytes-at-a-time path and the byte path)."""
    from hw.formats import ZERO_BYTE
    from hw.sim.results import invalid_bytes

    for byte in range(256):
        assert invalid_bytes(fmt, np.array([byte], dtype=np.uint8)) == (not BYTE_VALID[fmt][byte])
    bad = [b for b in range(256) if not BYTE_VALID[fmt][b]]
    for n in range(1, 25):
        raw = np.full((n,), ZERO_BYTE[fmt], dtype=np.uint8)
        assert not invalid_bytes(fmt, raw) and not invalid_bytes(fmt, raw.reshape(1, n))
        for pos in range(n):
            spoiled = raw.copy()
            spoiled[pos] = bad[(n + pos) % len(bad)]
            assert invalid_bytes(fmt, spoiled), (n, pos)


def test_blocked_product_bit_exact(monkeypatch):
    """Every product converted in blocks of a few rows (PRODUCT_BLOCK_BYTES set so that a matrix
    takes several blocks, the last one partial): bit-exact against the int64 reference, accumulator
    wrap and K not a multiple of lanes included, with the cache of decoded weights off and on."""
    from hw.sim import results

    blocks = []
    product = results._product
    monkeypatch.setattr(results, "PRODUCT", "float")
    monkeypatch.setattr(results, "_product", lambda x, w: blocks.append(
        -(-w.shape[0] // max(1, results.PRODUCT_BLOCK_BYTES // (4 * x.shape[1])))) or product(x, w))
    for seed in range(6):
        monkeypatch.setattr(results, "DECODED", results.DecodedWeights(0 if seed % 2 else 1 << 20))
        rng = np.random.default_rng(seed)
        cfg = TernConfig(rows=int(rng.integers(1, 9)), lanes=int(rng.choice([4, 5, 16, 13])),
                         weight_format=str(rng.choice(["2bit", "base3"])), bus_bytes=4,
                         act_depth=128, wgt_depth=16, out_depth=4)
        cfg = cfg.replace(acc_width=cfg.dot_width)
        T, N, K = int(rng.integers(1, 9)), int(rng.integers(5, 20)), int(rng.integers(1, cfg.lanes * 6))
        monkeypatch.setattr(results, "PRODUCT_BLOCK_BYTES", 4 * cfg.lanes * int(rng.integers(1, 4)))
        q, w = rng.integers(-128, 128, (T, K)), rng.integers(-1, 2, (N, K))
        for _ in range(2):
            r = simulate(cfg, linear_program(cfg, q, w))
            assert np.array_equal(outputs_to_matrix(cfg, r.outputs, T, N),
                                  wrap_signed(reference_matmul(q, w), cfg.acc_width)), seed
    assert max(blocks) >= 3 and min(blocks) >= 1, blocks      # several blocks per product


@pytest.mark.parametrize("kind", ["float", "int8"])
@pytest.mark.parametrize("K, dtype", [(1000, np.float32), ((1 << 24) // 128 + 2, np.float64)])
def test_product_is_exact_at_the_extremes(monkeypatch, K, dtype, kind):
    """hw.sim.results._product at the largest sums: activations -128 but the first (127) against
    weights of one sign, |x @ w.T| = 128 * K - 255, odd (as float: float32 up to 128 * K < 2**24,
    float64 from there on, where float32 would round it, in blocks of two rows and whole; as int8:
    torch._int_mm's int32 sums)."""
    from hw.sim import results

    monkeypatch.setattr(results, "PRODUCT", kind)

    x = np.full((2, K), -128, dtype=np.int8)
    x[:, 0] = 127
    x[1, ::3] = 127
    w = np.ones((5, K), dtype=np.int8)
    w[1] = -1
    w[2, ::2] = 0
    w[3, 1::2] = -1
    expect = x.astype(np.int64) @ w.T.astype(np.int64)
    assert abs(int(expect[0, 0])) == 128 * K - 255
    if dtype is np.float64:          # the case float32 cannot hold
        assert not np.array_equal((x.astype(np.float32) @ w.T.astype(np.float32)).astype(np.int64), expect)
    for block in (2 * np.dtype(dtype).itemsize * K, 1 << 30):
        monkeypatch.setattr(results, "PRODUCT_BLOCK_BYTES", block)
        d = results._product(x, w)
        assert d.dtype == np.int64 and np.array_equal(d, expect), block


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_both_products_bit_exact_through_the_simulator(monkeypatch, kind):
    """hw.sim with each product (:data:`hw.sim.results.PRODUCT`): random programs (rows, lanes,
    format, K not a multiple of lanes, accumulators that wrap) bit-exact against the int64 reference,
    with the cache of decoded weights off and on; the product each one used is counted."""
    from hw.sim import results

    used = {"int8": 0, "float": 0}
    int8, flt = results._product_int8, results._product_float
    monkeypatch.setattr(results, "PRODUCT", kind)
    monkeypatch.setattr(results, "_product_int8", lambda x, w: used.__setitem__("int8", used["int8"] + 1) or int8(x, w))
    monkeypatch.setattr(results, "_product_float", lambda x, w: used.__setitem__("float", used["float"] + 1) or flt(x, w))
    wrapped = 0
    for seed in range(6):
        monkeypatch.setattr(results, "DECODED", results.DecodedWeights(0 if seed % 2 else 1 << 20))
        rng = np.random.default_rng(100 + seed)
        cfg = TernConfig(rows=int(rng.integers(1, 9)), lanes=int(rng.choice([4, 5, 16, 13])),
                         weight_format=str(rng.choice(["2bit", "base3"])), bus_bytes=4,
                         act_depth=128, wgt_depth=16, out_depth=4)
        cfg = cfg.replace(acc_width=12 if seed % 3 == 0 else int(rng.integers(12, 17)))
        T, N, K = int(rng.integers(1, 9)), int(rng.integers(5, 20)), int(rng.integers(1, cfg.lanes * 6))
        q, w = rng.integers(-128, 128, (T, K)), rng.integers(-1, 2, (N, K))
        if seed % 3 == 0:      # the largest sums (-128 against weights of one sign) in 12 bits: they wrap
            K = cfg.lanes * 6 - 1
            q, w = np.full((T, K), -128), np.ones((N, K), dtype=np.int64)
            w[N // 2:] = -1
        expect = wrap_signed(reference_matmul(q, w), cfg.acc_width)
        wrapped += int(not np.array_equal(expect, reference_matmul(q, w)))
        for _ in range(2):
            r = simulate(cfg, linear_program(cfg, q, w))
            assert np.array_equal(outputs_to_matrix(cfg, r.outputs, T, N), expect), seed
    other = "float" if kind == "int8" else "int8"
    assert used[kind] >= 6 and used[other] == 0, used
    assert wrapped >= 2       # accumulators wrapped in two programs or more


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_product_of_narrow_and_strided_matrices(monkeypatch, kind):
    """hw.sim.results._product on K = 1 (where torch's CPU ``_int_mm`` is wrong for more than one
    output on an AVX-512 VNNI machine: the int8 product leaves it to float) and on weights that are a
    strided view, against the int64 product."""
    from hw.sim import results

    monkeypatch.setattr(results, "PRODUCT", kind)
    rng = np.random.default_rng(5)
    x1 = rng.integers(-128, 128, (3, 1), dtype=np.int8)
    w1 = np.array([[1], [-1], [1], [0], [-1], [1], [1], [-1]], dtype=np.int8)
    expect = x1.astype(np.int64) @ w1.T.astype(np.int64)
    assert np.array_equal(results._product(x1, w1), expect)
    x, w = rng.integers(-128, 128, (4, 40), dtype=np.int8), rng.integers(-1, 2, (30, 80), dtype=np.int8)[::3, ::2]
    assert not w.flags.c_contiguous
    assert np.array_equal(results._product(x, w), x.astype(np.int64) @ w.T.astype(np.int64))


def test_int8_dot_cpu_reads_the_flags(tmp_path):
    """hw.sim.results.int8_dot_cpu: True where cpuinfo's flags name avx512_vnni, avx_vnni or
    amx_int8, False for AVX2 alone and for a file that cannot be read."""
    from hw.sim.results import int8_dot_cpu

    cases = {"vnni": ("fpu avx2 avx512f avx512_vnni", True), "avxvnni": ("avx2 avx_vnni", True),
             "amx": ("avx2 amx_bf16 amx_int8", True), "avx2": ("fpu sse4_2 avx2 fma", False)}
    for name, (flags, want) in cases.items():
        f = tmp_path / name
        f.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
        assert int8_dot_cpu(str(f)) is want, name
    assert int8_dot_cpu(str(tmp_path / "absent")) is False


def test_plan_groups_consecutive_matmuls_over_the_same_words():
    """hw.sim.results.plan: a run of MATMULs over the same activation words whose weight words and
    results follow each other is one group; another address, token count or a LOAD_ACT starts a new
    one."""
    from hw.sim.results import plan

    log = [(0, 0, 4),                              # LOAD_ACT addr 0, beats 0..3
           (0, 2, 1, 0, 0), (0, 2, 1, 2, 1), (0, 2, 1, 4, 2),
           (2, 2, 1, 6, 3),                        # other words
           (2, 2, 1, 8, 4), (2, 2, 2, 10, 5),      # other token count
           (0, 0, 4), (2, 2, 1, 12, 7), (2, 2, 1, 14, 8)]
    assert plan(log) == [(0, 0, 4), (0, 2, 1, 0, 0, 3), (2, 2, 1, 6, 3, 2), (2, 2, 2, 10, 5, 1),
                         (0, 0, 4), (2, 2, 1, 12, 7, 2)]


def test_negative_count_is_the_sign_count():
    """hw.sim.results._negatives against np.count_nonzero(w < 0), for sizes that take the
    eight-bytes path and sizes that do not."""
    from hw.sim.results import _negatives

    rng = np.random.default_rng(2)
    for n in (1, 7, 8, 64, 1000, 4096):
        w = rng.integers(-128, 128, (n,), dtype=np.int8)
        assert _negatives(w) == int(np.count_nonzero(w < 0)), n
        assert _negatives(w.reshape(1, n)) == _negatives(w)


@pytest.mark.parametrize("K", [64, 2048])
@pytest.mark.parametrize("budget, defer", [(1 << 20, 512 << 20), (1 << 20, 0), (0, 512 << 20)])
def test_token_groups_on_the_same_weights_share_one_product(monkeypatch, budget, defer, K):
    """A prefill call of 40 tokens whose activations take several LOAD_ACTs (K=64: 16 tokens fill the
    buffer, three token groups; K=2048: two K chunks of one token a group) streams the same weights
    for each token group: with the decoded weights kept, one product of all 40 rows per weight
    matrix (per chunk); without them, one per group. Results equal the int64 reference, on a fresh
    run and on the known program's replay, also with no room to hold products back
    (``DEFER_MAX_BYTES`` 0: a new matrix first computes the ones held)."""
    from hw.sim import machine, results
    from sw.driver.compiler import compile_linear

    monkeypatch.setattr(results, "DECODED", results.DecodedWeights(budget))
    monkeypatch.setattr(results, "DEFER_MAX_BYTES", defer)
    monkeypatch.setattr(machine, "TIMINGS", machine.TimingCache())
    rows = []
    product = results._product
    monkeypatch.setattr(results, "_product", lambda x, w: rows.append(x.shape[0]) or product(x, w))
    cfg = TernConfig(rows=4, lanes=16, bus_bytes=4, act_depth=64, wgt_depth=64, out_depth=8)
    rng = np.random.default_rng(11)
    T, N = 40, 8
    w = rng.integers(-1, 2, (N, K))
    comp = compile_linear(cfg, w)
    for _ in range(2):                       # a fresh run, then the known program's replay
        rows.clear()
        q = rng.integers(-128, 128, (T, K))
        prog = comp.program(q)
        assert len(prog.segments) == {64: 3, 2048: 80}[K] and len(comp.chunks) == {64: 1, 2048: 2}[K]
        r = simulate(cfg, words=prog.words, act_beats=prog.act_beats, wgt_beats=prog.wgt_beats)
        assert r.error == 0
        assert np.array_equal(comp.assemble(prog, r.outputs), reference_matmul(q, w))
        assert sum(rows) == T * len(comp.chunks)
        if not budget:
            assert len(rows) == len(prog.segments)
        elif defer:
            assert rows == [T] * len(comp.chunks)


@pytest.mark.parametrize("fmt", ["2bit", "base3"])
def test_pair_table_is_two_byte_table_entries(fmt):
    """hw.sim.results._pair_table: for every pair of byte values, the weights of the first byte then
    the second's (BYTE_WEIGHTS), or None where a byte's weights are not a 1-, 2- or 4-byte word."""
    from hw.formats import BYTE_WEIGHTS
    from hw.sim.results import _pair_table

    table = _pair_table(fmt)
    n = BYTE_WEIGHTS[fmt].shape[1]
    if n not in (1, 2, 4):
        assert table is None
        return
    v = np.arange(1 << 16)
    got = np.ascontiguousarray(table).view(np.int8).reshape(1 << 16, 2 * n)
    want = np.concatenate([BYTE_WEIGHTS[fmt][v & 0xFF], BYTE_WEIGHTS[fmt][v >> 8]], axis=1)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("fmt", ["2bit", "base3"])
@pytest.mark.parametrize("rows, lanes, bus", [(16, 64, 16), (4, 16, 4), (3, 8, 4), (2, 5, 2), (4, 16, 2),
                                             (2, 8, 2), (3, 4, 2), (2, 12, 2)])
def test_decode_is_the_byte_table(monkeypatch, fmt, rows, lanes, bus):
    """hw.sim.results._decode on random bytes (every byte value, invalid codes included) against
    BYTE_WEIGHTS read byte by byte and laid out as (rows of every word, K): the matrix, the invalid
    flag and the nonzero / negative counts, through two bytes per lookup (row bytes even), one, and
    the whole table (codes of a byte across rows); the 2-bit field popcounts count them whenever the
    words have no padding."""
    from hw.formats import BYTE_VALID, BYTE_WEIGHTS
    from hw.sim import results

    cfg = TernConfig(rows=rows, lanes=lanes, bus_bytes=bus, weight_format=fmt, act_depth=64,
                     wgt_depth=8, out_depth=4)
    counted = []
    for f, count in list(results._FIELD_COUNTS.items()):
        if count is not None:
            monkeypatch.setitem(results._FIELD_COUNTS, f, lambda raw, c=count: counted.append(1) or c(raw))
    rng = np.random.default_rng(rows * lanes)
    G, kw = 3, 5
    word_bytes = cfg.beats_per_word * bus
    tpb = cfg.trits_per_byte
    row_bytes = lanes // tpb if lanes % tpb == 0 else None
    for trial in range(3):
        raw = rng.integers(0, 256, (G * kw, word_bytes), dtype=np.uint8)
        if trial == 2:                               # valid bytes only
            raw = rng.choice(np.flatnonzero(BYTE_VALID[fmt]).astype(np.uint8), raw.shape)
        w, invalid, nz, neg = results._decode(cfg, raw, G, kw, kw * lanes, row_bytes)
        per_word = BYTE_WEIGHTS[fmt][raw].reshape(G, kw, -1)[:, :, :rows * lanes]
        ref = per_word.reshape(G, kw, rows, lanes).transpose(0, 2, 1, 3).reshape(G * rows, kw * lanes)
        assert np.array_equal(w, ref)
        assert bool(invalid) == (not BYTE_VALID[fmt][raw].all())
        assert (nz, neg) == (int(np.count_nonzero(ref)), int(np.count_nonzero(ref < 0)))
        assert results._negatives(ref) == neg
    padded = row_bytes is None or rows * row_bytes < word_bytes
    assert bool(counted) == (fmt == "2bit" and not padded), (counted, padded)

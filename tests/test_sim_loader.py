"""hw.sim.loader: the weight loader's timing rules on hand-worked cases (ideal streams, a config with
4 beats per word and decoder latency 1): words written one ``beats_per_word`` apart after the loader
takes its MATMUL, the weight stream gate, the bank scoreboard and the decoder's one-word buffer."""

from hw.config import TernConfig
from hw.sim.loader import WeightLoader
from hw.timing import Timing

CFG = TernConfig(rows=4, lanes=8, bus_bytes=2, act_depth=64, wgt_depth=8, out_depth=4)


def test_config():
    assert (CFG.beats_per_word, CFG.decoder_latency) == (4, 1)


def test_first_matmul_streams_from_the_cycle_after_the_pop():
    ld = WeightLoader(CFG, Timing(), 3)
    writes = ld.load(2, 3, [])                    # pushed in 2: popped in 3, ld_valid from 4
    assert ld.ld_pop == [3] and ld.ld_valid_from == [4]
    assert ld.wgt.t.tolist() == list(range(4, 16))
    # word k's last beat in 7 + 4k, written decoder_latency later (ARCHITECTURE: 3 + (k+1)*bpw + Ld)
    assert writes.tolist() == [8, 12, 16] == ld.ld_write.tolist()
    assert ld.ld_valid_until == [16] and ld.n_words == 3


def test_gate_bank_scoreboard_and_decoder_buffer():
    ld = WeightLoader(CFG, Timing(), 6)
    ld.load(2, 3, [])
    # MATMUL 1 is popped when MATMUL 0's last word is written (16); its first beat is taken in 16,
    # inside MATMUL 0's ld_valid interval (the gate is open), the others from ld_valid (17) on
    assert ld.load(3, 1, []).tolist() == [20]
    assert ld.ld_pop[1] == 16 and ld.wgt.t[12:16].tolist() == [16, 17, 18, 19]
    # MATMUL 2 reuses MATMUL 0's bank: word 0 waits for its release (last issue in 30) + 1
    assert ld.load(4, 1, [30]).tolist() == [31]
    assert ld.wgt.t[16:20].tolist() == [20, 21, 22, 23]
    # MATMUL 3: its beats arrive early, but the last one waits until the decoder's finished word
    # (MATMUL 2's) is taken in 31; its own word 0 waits for MATMUL 1's bank (release 40)
    assert ld.load(5, 1, [30, 40]).tolist() == [41]
    assert ld.wgt.t[20:24].tolist() == [24, 25, 26, 31]
    assert ld.ld_valid_from == [4, 17, 21, 32] and ld.ld_valid_until == [16, 20, 31, 41]

"""Event counts of a simulated run, for the energy estimator (definitions in ``docs/SIMULATOR.md``)."""

from __future__ import annotations

from hw.config import TernConfig
from hw.result import RunResult

__all__ = ["event_counts"]


def event_counts(cfg: TernConfig, res: RunResult, counts: dict, *, n_instr: int, n_words: int,
                 extra: dict) -> dict:
    """Event counts of the run ``res``: ``counts`` holds the events of all eight performance
    counters, unwrapped (whichever counters the configuration builds); ``n_instr`` instruction
    words, ``n_words`` weight words written; ``extra`` holds the data-dependent counts ``tokens``,
    ``nonzero_terms`` and ``neg_terms``."""
    R, L, A, B = cfg.rows, cfg.lanes, cfg.acc_width, cfg.bus_bytes
    c = counts
    busy = c["busy"]
    tokens = extra["tokens"]
    n_out = len(res.outputs)
    adds = {int(w): int(k) * busy * R for w, k in cfg.tree_adder_widths.items()}
    stall = c["stall_weight"] + c["stall_out"] + c["stall_act"]
    return {
        # PE array
        "pe_issues": busy,
        "dot_products": busy * R,
        "lane_terms": busy * R * L,                 # conditional-negation muxes evaluated
        "nonzero_terms": extra["nonzero_terms"],    # terms with a nonzero weight
        "negated_terms": extra["neg_terms"],        # terms with weight -1 (negations)
        "tree_adds_by_width": adds,                 # {adder width in bits: additions}
        "tree_adds": sum(adds.values()),
        "acc_adds": (busy - tokens) * R,            # A-bit accumulator additions
        "acc_loads": tokens * R,                    # accumulator loads (first step of a token)
        "acc_updates": busy * R,
        "acc_width": A,
        # on-chip SRAM traffic, bits
        "sram_bits": {
            "act_buffer": {"read": busy * 8 * L, "write": c["act_beats"] * 8 * L},
            "weight_buffer": {"read": busy * 2 * R * L, "write": n_words * 2 * R * L},
            "output_fifo": {"read": n_out * A * R, "write": n_out * A * R},
        },
        "weight_decoder_bytes": c["wgt_beats"] * B,
        # off-core streams
        "bus_bytes": {"instr": 8 * n_instr, "act": c["act_beats"] * L, "wgt": c["wgt_beats"] * B,
                      "out": n_out * R * (-(-A // 8))},
        "weight_words": n_words,
        "results": n_out,
        # cycles
        "cycles": c["cycles"],
        "active_cycles": busy + c["act_beats"],
        "stall_cycles": stall,
        "idle_cycles": c["idle"],
    }

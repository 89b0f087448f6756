"""The one accelerator configuration shared by the RTL, the simulator, the compiler and the estimator.

:class:`TernConfig` is frozen and validates itself on construction, so an invalid machine can never be
elaborated, simulated or compiled for. Everything that depends on the configuration (widths, latencies,
stream geometry) is derived here, once, as a read-only property.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, fields
from pathlib import Path

from hw.fileio import read_toml

__all__ = ["TernConfig", "ConfigError", "WEIGHT_FORMATS", "TRITS_PER_BYTE", "DOT_VARIANTS",
           "PERF_COUNTERS", "DEFAULT_CLOCK_MHZ", "sum_width", "is_int", "check_int"]

#: Hardware weight stream formats (``docs/FORMATS.md``) and the ternary codes each byte carries.
WEIGHT_FORMATS = ("2bit", "base3")
TRITS_PER_BYTE = {"2bit": 4, "base3": 5}

#: Micro-architectures of the ternary dot unit (``hw/rtl/dot.py``); every variant computes the same
#: exact sum with the same latency, they differ in area.
DOT_VARIANTS = ("mux", "carry", "slot", "slot_odd")

#: The core's performance counters, in port order (definitions in ``docs/ARCHITECTURE.md``).
PERF_COUNTERS = ("cycles", "busy", "act_beats", "stall_weight", "stall_act", "stall_out", "idle",
                 "wgt_beats")

#: Clock of the modelled device, in MHz, for tokens/s and seconds where none is given.
DEFAULT_CLOCK_MHZ = 200.0


def masked_sum_width(n_terms: int) -> int:
    """Signed width that holds any sum of ``n_terms`` int8 values, each possibly bit-inverted or zeroed,
    plus fewer than ``n_terms`` carry bits (range ``[-128 * n_terms, 128 * n_terms - 1]``): a node of
    the ``carry`` dot unit's tree over that many lanes."""
    return (128 * n_terms - 1).bit_length() + 1


def sum_width(n_terms: int) -> int:
    """Signed width that holds any sum of ``n_terms`` products of an int8 and a ternary weight
    (range ``[-128 * n_terms, 128 * n_terms]``): the width of an adder-tree node over that many lanes."""
    return (128 * n_terms).bit_length() + 1


class ConfigError(ValueError):
    """An invalid accelerator configuration. The message names the field and the bad value."""


def is_int(value) -> bool:
    """``value`` is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name, value, lo=None, hi=None, *, power_of_two=False, error=None):
    """Raise ``error`` (default :class:`ConfigError`) unless ``value`` is an ``int`` (not a ``bool``)
    in ``[lo, hi]`` (a bound of ``None`` is open) and, with ``power_of_two``, a power of two. The one
    integer-setting check of the accelerator and model configurations; the message names the
    setting and the bad value."""
    error = ConfigError if error is None else error
    if not is_int(value):
        raise error(f"{name} must be an integer, not {value!r}")
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise error(f"{name} must be between {lo} and {hi}, not {value}")
    if lo is not None and value < lo:
        raise error(f"{name} must be at least {lo}, not {value}")
    if hi is not None and value > hi:
        raise error(f"{name} must be at most {hi}, not {value}")
    if power_of_two and value & (value - 1):
        raise error(f"{name} must be a power of two, not {value}")


@functools.lru_cache(maxsize=None)
def _adder_tree(lanes: int) -> tuple:
    """The levels of a dot unit's binary adder tree over ``lanes`` lanes, first level first: per
    level, the ``(a, b)`` lane counts of its adders (nodes paired in order) and the lane counts of
    the nodes after it (an odd node passes through). Computed once per lane count (the simulator's
    event counts ask for it on every run)."""
    levels = []
    nodes = (1,) * lanes
    while len(nodes) > 1:
        pairs = tuple((nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2))
        nodes = tuple(sum(nodes[i:i + 2]) for i in range(0, len(nodes), 2))
        levels.append((pairs, nodes))
    return tuple(levels)


@functools.lru_cache(maxsize=None)
def _tree_adder_widths(lanes: int) -> tuple:
    """``((width, adders), ...)`` of the adder tree over ``lanes`` lanes, widths ascending."""
    hist: dict = {}
    for pairs, _ in _adder_tree(lanes):
        for a, b in pairs:
            w = sum_width(a + b)
            hist[w] = hist.get(w, 0) + 1
    return tuple(sorted(hist.items()))


@dataclass(frozen=True)
class TernConfig:
    """Accelerator configuration.

    Parameters
    ----------
    rows : int
        Number of ternary dot units (PE rows); output features computed in parallel. 1..256.
    lanes : int
        int8 activation lanes per dot unit; input features consumed per cycle. 1..256.
    acc_width : int
        Width in bits of each row's signed accumulator. Must hold at least one full dot product
        (``dot_width``); at most 64.
    weight_format : str
        Weight stream format, ``"2bit"`` (4 codes per byte) or ``"base3"`` (5 trits per byte).
    bus_bytes : int
        Width in bytes of the weight stream (one beat per cycle at most). 1..256.
    act_depth : int
        Activation buffer depth in words of ``lanes`` int8 values. Power of two, 16..65536.
    wgt_depth : int
        Depth of each of the two weight buffer banks, in words of ``rows * lanes`` codes; bounds the
        number of ``lanes``-chunks of K one MATMUL may use. Power of two, 4..65536.
    out_depth : int
        Output FIFO depth in result vectors (``rows`` accumulators each). 2..65536.
    tree_reg_every : int
        The dot unit's adder tree has a pipeline register after every ``tree_reg_every`` adder levels
        (0: purely combinational tree). 0..16.
    dot_variant : str
        Micro-architecture of the dot unit, one of :data:`DOT_VARIANTS` (same results and latency,
        different area; ``docs/ARCHITECTURE.md``, "Dot unit").
    perf_counters : tuple of str
        The performance counters the core has: names of :data:`PERF_COUNTERS`, ``"cycles"`` among
        them, kept in the order of :data:`PERF_COUNTERS` (the port order) whatever order they are
        given in (a list is taken too). Default: all eight.
    perf_width : int
        Width in bits of every performance counter; each wraps at ``2**perf_width``. 16..64.
    """

    rows: int = 16
    lanes: int = 64
    acc_width: int = 32
    weight_format: str = "2bit"
    bus_bytes: int = 16
    act_depth: int = 4096
    wgt_depth: int = 512
    out_depth: int = 64
    tree_reg_every: int = 2
    dot_variant: str = "mux"
    perf_counters: tuple = PERF_COUNTERS
    perf_width: int = 48

    def __post_init__(self):
        check_int("rows", self.rows, 1, 256)
        check_int("lanes", self.lanes, 1, 256)
        check_int("bus_bytes", self.bus_bytes, 1, 256)
        check_int("act_depth", self.act_depth, 16, 65536, power_of_two=True)
        check_int("wgt_depth", self.wgt_depth, 4, 65536, power_of_two=True)
        check_int("out_depth", self.out_depth, 2, 65536)
        check_int("tree_reg_every", self.tree_reg_every, 0, 16)
        if self.weight_format not in WEIGHT_FORMATS:
            raise ConfigError(f"weight_format must be one of {', '.join(WEIGHT_FORMATS)}, "
                              f"not {self.weight_format!r}")
        check_int("acc_width", self.acc_width, self.dot_width, 64)
        if self.dot_variant not in DOT_VARIANTS:
            raise ConfigError(f"dot_variant must be one of {', '.join(DOT_VARIANTS)}, "
                              f"not {self.dot_variant!r}")
        names = self.perf_counters
        if isinstance(names, str) or not isinstance(names, (tuple, list)):
            raise ConfigError(f"perf_counters must be a list of counter names, not {names!r}")
        for name in names:
            if name not in PERF_COUNTERS:
                raise ConfigError(f"perf_counters: unknown counter {name!r} "
                                  f"(known: {', '.join(PERF_COUNTERS)})")
        if len(set(names)) != len(names):
            raise ConfigError(f"perf_counters names a counter twice: {', '.join(names)}")
        if "cycles" not in names:
            raise ConfigError("perf_counters must include 'cycles'")
        object.__setattr__(self, "perf_counters", tuple(n for n in PERF_COUNTERS if n in names))
        check_int("perf_width", self.perf_width, 16, 64)

    # -- derived geometry -------------------------------------------------------------------------

    @property
    def dot_width(self) -> int:
        """Signed width that holds any dot product of ``lanes`` int8 values with ternary weights
        (range ``[-128 * lanes, 128 * lanes]``)."""
        return sum_width(self.lanes)

    @property
    def lane_term_width(self) -> int:
        """Signed width of one lane term of a dot unit (``+a``, ``-a`` or 0 for an int8 ``a``): 9."""
        return sum_width(1)

    def tree_node_width(self, n_lanes: int, *, first: bool = False) -> int:
        """Signed width of a node of the dot unit's adder tree that covers ``n_lanes`` lanes (``first``:
        the node that covers lane 0): :func:`sum_width` for ``mux`` (exact partial sums);
        :func:`masked_sum_width` for ``carry`` (masked activations and the carries absorbed so far)
        and for ``slot``/``slot_odd`` (complemented), except that their lane 0 is exact, one more
        below, so the nodes over it are :func:`sum_width` wide. The root's (``n_lanes = lanes, first``) is at
        most :attr:`dot_width`."""
        if self.dot_variant == "mux" or (self.dot_variant.startswith("slot") and first):
            return sum_width(n_lanes)
        return masked_sum_width(n_lanes)

    @property
    def tree_levels(self) -> int:
        """Adder levels in the dot unit's reduction tree: ``ceil(log2(lanes))``."""
        return (self.lanes - 1).bit_length()

    @property
    def tree_adder_widths(self) -> dict:
        """``{width: adders}`` of one dot unit's adder tree: a binary tree of :attr:`tree_levels`
        levels, nodes paired in order, an odd node passed through, each adder as wide as its range
        (:func:`sum_width` of the lanes it covers)."""
        return dict(_tree_adder_widths(self.lanes))

    @property
    def tree_register_bits(self) -> int:
        """Flip-flops of one dot unit's pipeline registers: after adder level ``j * tree_reg_every``
        (j = 1, 2, ...), one per bit of every node at that level (the ``mux`` variant's tree: a node
        covering ``n`` lanes is :func:`sum_width` ``(n)`` bits wide; an odd node passes to the next
        level unchanged)."""
        if self.tree_reg_every == 0:
            return 0
        return sum(sum(sum_width(n) for n in nodes)
                   for level, (_, nodes) in enumerate(_adder_tree(self.lanes), 1)
                   if level % self.tree_reg_every == 0)

    # -- pipeline (every latency the RTL has; each block checks its own at elaboration) ------------

    @property
    def dot_latency(self) -> int:
        """Register stages of a dot unit: one after every ``tree_reg_every`` adder levels (0 for a
        combinational tree)."""
        return self.tree_levels // self.tree_reg_every if self.tree_reg_every else 0

    @property
    def pe_latency(self) -> int:
        """PE array: cycles from a step with ``valid & last`` to its ``result_valid`` (the dot unit,
        then the accumulator register)."""
        return self.dot_latency + 1

    @property
    def decoder_latency(self) -> int:
        """Weight decoder: a beat accepted in cycle ``c`` that completes a word makes it valid from
        ``c + decoder_latency``."""
        return 1

    @property
    def ram_latency(self) -> int:
        """Activation and weight buffers: address in cycle ``c``, data in ``c + ram_latency``."""
        return 1

    @property
    def operand_latency(self) -> int:
        """The PE array's operand register (``hw/rtl/top.py``): a step's buffer read data and
        controls, leaving the controller in cycle ``c``, enter the PE array in ``c + 1``."""
        return 1

    @property
    def out_fifo_latency(self) -> int:
        """Output FIFO: a write into an empty FIFO in cycle ``c`` is on ``out`` from ``c + 1``."""
        return 1

    @property
    def result_latency(self) -> int:
        """Cycles from the issue of a token's last step to the first cycle its result can leave
        ``out``: RAM read + operand register + PE array + output FIFO."""
        return self.ram_latency + self.operand_latency + self.pe_latency + self.out_fifo_latency

    @property
    def queue_depth(self) -> int:
        """Entries of the execute queue and of the loader queue (instructions)."""
        return 4

    @property
    def check_stages(self) -> int:
        """Registers of the dispatch's check pipeline in front of the dispatch register D: one per
        adder level of the tree that sums ``act_addr`` and the ``log2(wgt_depth) + 1`` shifted
        partial products of ``k_words * tokens`` (``ceil(log2(log2(wgt_depth) + 2))``; the first
        stage holds the raw word, the last adder level and the range comparison feed D)."""
        return (self.wgt_depth.bit_length()).bit_length()

    @property
    def dispatch_latency(self) -> int:
        """Cycles from an instruction's acceptance on ``instr`` to the first cycle it can be current
        in the execute engine / the loader (queues and engines free): the check pipeline
        (:attr:`check_stages`), the dispatch register D, queue push, queue pop."""
        return self.check_stages + 3

    @property
    def word_trits(self) -> int:
        """Codes in one weight word: one ``lanes``-chunk of K for every row."""
        return self.rows * self.lanes

    @property
    def trits_per_byte(self) -> int:
        """Ternary codes carried by one weight stream byte (4 in ``2bit``, 5 in ``base3``)."""
        return TRITS_PER_BYTE[self.weight_format]

    @property
    def trits_per_beat(self) -> int:
        """Ternary codes carried by one weight stream beat."""
        return self.bus_bytes * self.trits_per_byte

    @property
    def beats_per_word(self) -> int:
        """Weight stream beats that carry one weight word (the last beat may be partly padding)."""
        return -(-self.word_trits // self.trits_per_beat)

    @property
    def stream_efficiency(self) -> float:
        """Fraction of the weight stream's codes that are payload rather than word padding."""
        return self.word_trits / (self.beats_per_word * self.trits_per_beat)

    @property
    def max_k(self) -> int:
        """Largest K (input features) one MATMUL can cover: one full weight bank."""
        return self.wgt_depth * self.lanes

    @property
    def acc_limit(self) -> int:
        """Largest magnitude the signed ``acc_width``-bit accumulator holds on both sides:
        ``2**(acc_width-1) - 1``."""
        return (1 << (self.acc_width - 1)) - 1

    @property
    def max_k_exact(self) -> int:
        """Largest K whose dot products provably fit the accumulator: ``128 * K <= acc_limit``
        (every partial sum of K int8 x ternary products has magnitude at most ``128 * K``)."""
        return self.acc_limit // 128

    @property
    def max_chunk_words(self) -> int:
        """Most weight words one K chunk (one MATMUL of the compiler) may have: it must fit a weight
        bank (``wgt_depth``), a LOAD_ACT must hold one token of it (``act_depth``), and its dot
        products must provably fit the accumulator (``floor(max_k_exact / lanes)``, at least 1
        because ``acc_width >= dot_width``)."""
        return min(self.wgt_depth, self.act_depth, self.max_k_exact // self.lanes)

    # -- tiling geometry ---------------------------------------------------------------------------

    def k_words(self, k: int) -> int:
        """Activation / weight words that cover ``k`` input features (K zero-padded to ``lanes``)."""
        return -(-int(k) // self.lanes)

    def n_tiles(self, n: int) -> int:
        """``rows``-row weight tiles that cover ``n`` output features (N zero-padded to ``rows``)."""
        return -(-int(n) // self.rows)

    def tokens_per_group(self, k_words: int) -> int:
        """Tokens one LOAD_ACT can hold for ``k_words``-word inputs: ``floor(act_depth / k_words)``."""
        return self.act_depth // int(k_words)

    # -- serialization ----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The settings as JSON has them (``perf_counters`` a list): ``from_dict`` takes it back."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes) -> "TernConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "configuration") -> "TernConfig":
        """Build from a mapping (JSON, TOML, CLI flags); unknown keys are rejected by name."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a table of settings, not {type(values).__name__}")
        known = set(cls.field_names())
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting {unknown[0]!r} "
                              f"(known: {', '.join(sorted(known))})")
        try:
            return cls(**values)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_toml(cls, path) -> "TernConfig":
        """Read a TOML file whose top level (or ``[accelerator]`` table) holds the settings."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: no such configuration file")
        data = read_toml(path, what="accelerator configuration (TOML)", error=ConfigError)   # bounded
        if "accelerator" in data and isinstance(data["accelerator"], dict):
            data = data["accelerator"]
        return cls.from_dict(data, source=str(path))

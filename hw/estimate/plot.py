"""``tern estimate --plot FILE.png``: one figure of an estimate, rendered to PNG bytes.

Two panels: (1) the energy per token by part (:func:`hw.estimate.estimate`'s ``breakdown``, grouped:
the core's arithmetic and SRAM, its memory traffic by stream, the host's parts, static power) as a
horizontal bar chart in mJ; (2) the roofline of the configuration on the chosen memory
(:func:`hw.estimate.model.roofline_points`): the compute roof, the memory roof, and each projection
as a point for decode and for prefill.

matplotlib is imported here only (``tern estimate`` imports this module only with ``--plot``), and
only its object API with the Agg canvas is used (no pyplot state, no interactive backend).
:func:`render_png` returns the bytes, so the caller writes them with :func:`hw.fileio.atomic_write`.
"""

from __future__ import annotations

import io

__all__ = ["energy_bars", "render_png", "write_png", "WIDTH_IN", "HEIGHT_IN"]

#: The figure's size in inches: ``render_png(..., dpi=d)`` is ``WIDTH_IN x d`` by ``HEIGHT_IN x d`` pixels.
WIDTH_IN, HEIGHT_IN = 16, 7

# (label, breakdown keys): the bars of panel 1, top to bottom
_GROUPS = (
    ("core logic (negation, adder tree, acc., decoder)",
     ("lane_negation", "adder_tree", "accumulators", "weight_decoder")),
    ("core SRAM (act., weight buffers, output FIFO)",
     ("sram_act_buffer", "sram_weight_buffer", "sram_output_fifo")),
    ("memory: core weight stream", ("dram_weights",)),
    ("memory: core activations + results", ("dram_activations",)),
    ("memory: core instructions", ("dram_instructions",)),
    ("host: LM head", ("lm_head",)),
    ("host: attention + KV cache", ("attention", "kv_cache")),
    ("host: embedding, norms, quant., elementwise",
     ("embedding", "norms", "activation_quant", "elementwise")),
    ("host: its side of the core streams", ("host_transfers",)),
    ("static: core leakage", ("static_core",)),
    ("static: memory background", ("static_memory",)),
)


def energy_bars(result: dict) -> list:
    """``[(label, joules per token), ...]``: the estimate's ``breakdown`` in the groups of panel 1.
    Every breakdown entry is in exactly one group, so the bars sum to ``energy_per_token_j``."""
    b = result["breakdown"]
    grouped = {k for _, keys in _GROUPS for k in keys}
    missing = set(b) - grouped
    if missing:
        raise ValueError(f"breakdown entries not in any bar: {sorted(missing)}")
    return [(label, sum(b.get(k, 0.0) for k in keys)) for label, keys in _GROUPS]


def _fmt_mj(mj: float) -> str:
    if mj == 0:
        return "0 mJ"
    if mj >= 0.1:
        return f"{mj:.2f} mJ"
    return f"{mj:.2g} mJ"


def _si(x: float, unit: str) -> str:
    for p, s in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= p:
            return f"{x / p:.3g} {s}{unit}"
    return f"{x:.3g} {unit}"


def render_png(result: dict, roofline: dict, *, dpi: int = 100) -> bytes:
    """The figure of ``result`` (:func:`hw.estimate.estimate`) and ``roofline``
    (:func:`hw.estimate.model.roofline_points`) as PNG bytes (:data:`WIDTH_IN` x :data:`HEIGHT_IN` inches at ``dpi``: 1600 x 700 pixels at 100)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.0]})
    m = result["memory"]
    mode = "decode" if result["tokens"] == 1 else f"{result['tokens']}-token prefill"
    fig.suptitle(f"tern estimate: {result['model']}, {result['config']['rows']} rows x "
                 f"{result['config']['lanes']} lanes ({result['config']['weight_format']}, "
                 f"{result['config']['bus_bytes']}-byte bus) at {result['clock_mhz']:g} MHz, "
                 f"{m['name']} x{m['channels']}, {result['node']}",
                 fontsize=12)

    # -- panel 1: energy per token by part
    bars = energy_bars(result)
    labels = [lab for lab, _ in bars]
    mj = np.array([j * 1e3 for _, j in bars])
    y = np.arange(len(bars))[::-1]
    colors = (["#4c72b0"] * 2 + ["#dd8452"] * 3 + ["#55a868"] * 4 + ["#8c8c8c"] * 2)
    ax1.barh(y, mj, color=colors)
    ax1.set_yticks(y, labels, fontsize=8.5)
    total = result["energy_per_token_j"] * 1e3
    ax1.set_xlim(0, max(mj.max(), 1e-30) * 1.35)
    for yi, v in zip(y, mj):
        ax1.text(v + ax1.get_xlim()[1] * 0.01, yi, f"{_fmt_mj(v)} ({100 * v / total:.1f}%)",
                 va="center", fontsize=8)
    ax1.set_xlabel("energy per token (mJ)")
    ax1.set_title(f"energy per token by part ({mode}, context {result['context']}): "
                  f"{_fmt_mj(total)}, {result['tokens_per_s']:.3g} tokens/s", fontsize=10)
    ax1.grid(axis="x", alpha=0.3)

    # -- panel 2: roofline
    pts = roofline["points"]
    roof = roofline["compute_roof_ops_s"]
    sust = roofline["sustainable_bytes_s"]
    ridge = roofline["ridge_intensity"]
    xs = [p["intensity"] for p in pts]
    lo = min(min(xs), ridge) / 4
    hi = max(max(xs), ridge) * 4
    x = np.geomspace(lo, hi, 200)
    ax2.plot(x, np.minimum(roof, sust * x), color="black", lw=1.8, label="attainable: min(compute, memory)")
    ax2.axhline(roof, color="#4c72b0", ls="--", lw=1,
                label=f"compute roof: {result['config']['rows']} x {result['config']['lanes']} "
                      f"x {result['clock_mhz']:g} MHz = {_si(roof, 'MAC/s')}")
    ax2.plot(x, sust * x, color="#dd8452", ls="--", lw=1,
             label=f"memory roof: {sust / 1e9:.3g} GB/s sustainable x intensity")
    markers = {"decode": "o", "prefill": "^"}
    names = list(dict.fromkeys(p["name"] for p in pts))
    cmap = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"]
    for i, n in enumerate(names):
        for mode_, mk in markers.items():
            sel = [p for p in pts if p["name"] == n and p["mode"] == mode_]
            if sel:
                ax2.scatter([p["intensity"] for p in sel], [p["attained_ops_s"] for p in sel],
                            marker=mk, s=42, color=cmap[i % len(cmap)], edgecolor="black", lw=0.5,
                            zorder=3)
    # legend entries: one per projection (colour) and one per mode (marker)
    from matplotlib.lines import Line2D
    handles, _ = ax2.get_legend_handles_labels()
    handles += [Line2D([], [], ls="", marker="s", color=cmap[i % len(cmap)], label=n)
                for i, n in enumerate(names)]
    handles += [Line2D([], [], ls="", marker=markers["decode"], color="white", markeredgecolor="black",
                       label="decode (T = 1)"),
                Line2D([], [], ls="", marker=markers["prefill"], color="white", markeredgecolor="black",
                       label=f"prefill (T = {roofline['prefill_tokens']})")]
    ax2.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
               borderaxespad=0)
    # the projections of one mode often share an intensity: say so next to the cluster
    for mode_ in markers:
        sel = [p for p in pts if p["mode"] == mode_]
        if sel:
            i_lo, i_hi = min(p["intensity"] for p in sel), max(p["intensity"] for p in sel)
            a_lo = min(p["attained_ops_s"] for p in sel)
            a_hi = max(p["attained_ops_s"] for p in sel)
            rng_i = f"{i_lo:.3g}" if f"{i_lo:.3g}" == f"{i_hi:.3g}" else f"{i_lo:.3g}-{i_hi:.3g}"
            rng_a = (_si(a_lo, "MAC/s") if _si(a_lo, "MAC/s") == _si(a_hi, "MAC/s")
                     else f"{_si(a_lo, 'MAC/s')}-{_si(a_hi, 'MAC/s')}")
            right = mode_ == "decode"
            ax2.annotate(f"{mode_} (T = {sel[0]['tokens']}):\n{rng_i} MAC/byte, {rng_a}",
                         (i_lo if right else i_hi, a_lo), xytext=(10 if right else -10, -30),
                         textcoords="offset points", fontsize=8, ha="left" if right else "right",
                         arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "gray"})
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlim(lo, hi)
    ys = [p["attained_ops_s"] for p in pts]
    ax2.set_ylim(min(min(ys), sust * lo) / 3, roof * 3)
    ax2.set_xlabel("operational intensity (ternary MACs per byte moved from memory)")
    ax2.set_ylabel("attained rate (ternary MACs / s)")
    ax2.set_title(f"roofline (ridge at {ridge:.3g} MAC/byte)", fontsize=10)
    ax2.grid(which="both", alpha=0.25)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def write_png(path, result: dict, roofline: dict) -> None:
    """Render first, then write ``path`` atomically: a failure leaves an existing file untouched."""
    from hw.fileio import atomic_write
    data = render_png(result, roofline)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))

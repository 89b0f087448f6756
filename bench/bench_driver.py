"""Driver benchmark: 2B4T-shaped layers and a whole 30-layer 2B4T decode token through the simulator.

    python bench/bench_driver.py            # layer (cold and warm) + whole-model prefill and decode token
    python bench/bench_driver.py --quick    # layer only, and a 4-layer model
    python bench/bench_driver.py --json     # one JSON object
    python bench/bench_driver.py --rows 32  # any configuration flag of tern (default: TernConfig())

Prints wall times of the host (compile = pack the weights once; run = simulate + host ops) and the
device figures the simulator reports (cycles, PE and weight-bus utilization, modelled tokens/s at
200 MHz). Every layer output / generated token is checked against the reference model (torch.equal /
identical ids) unless --no-check.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from hw.config import TernConfig  # noqa: E402
from sw.cli.common import add_config_flags, bench_parser, config_from_args, print_json  # noqa: E402
from sw.driver.models import generate, layer_input  # noqa: E402
from sw.driver.runtime import Accelerator  # noqa: E402
from sw.model.presets import preset_config, random_layer, random_model  # noqa: E402


def bench_layer(cfg: TernConfig, tokens: int = 1) -> dict:
    mc = preset_config("2b4t")
    t0 = time.perf_counter()
    layer = random_layer(mc, 0, seed=0)
    t_gen = time.perf_counter() - t0
    x = layer_input(mc, tokens, seed=0)
    acc = Accelerator(cfg)
    t0 = time.perf_counter()
    with torch.no_grad():
        out_cold = layer(x, 0, None, acc.core)
    t_cold = time.perf_counter() - t0
    s = acc.stats
    acc.reset_stats()
    t0 = time.perf_counter()
    with torch.no_grad():
        out_warm = layer(x, 0, None, acc.core)
    t_warm = time.perf_counter() - t0
    ref = layer(x)
    return {"tokens": tokens, "generate_weights_s": t_gen, "cold_s": t_cold, "warm_s": t_warm,
            "sim_s": s["device_wall_s"], "bit_exact": bool(torch.equal(out_cold, ref) and torch.equal(out_warm, ref)),
            "cycles": s["cycles"], "utilization": s["utilization"], "bus_utilization": s["bus_utilization"],
            "packed_mb": acc.cache.nbytes / 2**20}


def bench_model(cfg: TernConfig, num_layers: int | None, check: bool) -> dict:
    t0 = time.perf_counter()
    model = random_model("2b4t", seed=0, num_layers=num_layers)
    t_build = time.perf_counter() - t0
    acc = Accelerator(cfg)
    stamps = [time.perf_counter()]
    ids = [[128000, 791, 4062]]
    toks = generate(model, ids, 2, acc, on_step=lambda s, nxt: stamps.append(time.perf_counter()))
    prefill_s, decode_s = stamps[1] - stamps[0], stamps[2] - stamps[1]
    s = acc.stats
    dec = [r for r in acc.records if r.step == 1]
    dec_cycles = sum(r.cycles for r in dec)
    res = {"layers": model.config.num_hidden_layers, "build_model_s": t_build, "prefill_s": prefill_s,
           "decode_token_s": decode_s, "decode_cycles": dec_cycles,
           "decode_utilization": sum(r.busy for r in dec) / dec_cycles,
           "decode_bus_utilization": sum(r.wgt_beats for r in dec) / dec_cycles,
           "decode_tokens_per_s_at_200mhz": 200e6 / dec_cycles, "cycles": s["cycles"],
           "packed_mb": acc.cache.nbytes / 2**20, "tokens": toks[0].tolist()}
    if check:
        t0 = time.perf_counter()
        ref = model.generate_greedy(ids, 2)[0].tolist()
        res["reference_s"] = time.perf_counter() - t0
        res["match"] = ref == res["tokens"]
    return res


def main(argv=None) -> int:
    p = bench_parser(__doc__.splitlines()[0], quick_help="layer only, and a 4-layer model")
    p.add_argument("--no-check", action="store_true", help="skip the reference comparison of the whole model")
    add_config_flags(p)
    a = p.parse_args(argv)
    cfg = config_from_args(a)
    out = {"config": cfg.to_dict(), "torch_threads": torch.get_num_threads()}
    out["layer_decode"] = bench_layer(cfg, 1)
    if not a.json:
        L = out["layer_decode"]
        print(f"2b4t layer, 1 token, sim ({cfg.rows}x{cfg.lanes}, {cfg.weight_format}, bus {cfg.bus_bytes} B): "
              f"cold {L['cold_s']:.2f} s (packs {L['packed_mb']:.1f} MB once), warm {L['warm_s']:.2f} s "
              f"(simulator {L['sim_s']:.2f} s); {L['cycles']:,} cycles, PE {100 * L['utilization']:.1f}%, "
              f"bus {100 * L['bus_utilization']:.1f}%; bit-exact {L['bit_exact']}", flush=True)
    out["model_decode"] = bench_model(cfg, 4 if a.quick else None, not a.no_check)
    if not a.json:
        m = out["model_decode"]
        print(f"2b4t model, {m['layers']} layers: prefill (3 tokens, compiles every projection) "
              f"{m['prefill_s']:.1f} s, decode token {m['decode_token_s']:.1f} s wall; decode "
              f"{m['decode_cycles']:,} cycles = {m['decode_tokens_per_s_at_200mhz']:.2f} tokens/s at 200 MHz, "
              f"PE {100 * m['decode_utilization']:.1f}%, bus {100 * m['decode_bus_utilization']:.1f}%; "
              f"packed weights {m['packed_mb']:.0f} MB"
              + (f"; tokens match the reference: {m['match']} (reference {m['reference_s']:.1f} s)"
                 if "match" in m else ""), flush=True)
    else:
        print_json(out)
    ok = out["layer_decode"]["bit_exact"] and out["model_decode"].get("match", True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

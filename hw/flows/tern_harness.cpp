// Stream driver of the Verilated tern core (top module tern_core, Verilator prefix Vtop): runs whole
// programs without a Python call per cycle. Built and spoken to by hw/flows/verilator_harness.py;
// the protocol (little-endian int64 words on stdin/stdout, stderr is the log) is described there.
//
// The drive policy is the one of hw/backends/drive.py (drive_streams, run_core, release), cycle for
// cycle: a source raises valid for transfer i in cycle avail_i = max(x_{i-1} + 1 + gap_i,
// latency + floor(i * den / num)) and keeps it until the transfer; the sink of `out` does the same with
// ready; a transfer happens in cycle c when valid & ready after the combinational logic settled; the
// payload of transfer i is on the bus from the cycle after transfer i-1; a run ends in the first cycle
// in which every input was accepted and idle is high (counters and error read in that cycle), at
// max_cycles (timeout) or at stop_at (stopped), and is followed by one more clock edge, then every
// valid and ready low. Each case starts with a one-cycle synchronous reset.
#include "Vtop.h"
#include "verilated.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

// Verilator spells the "__" of the port names (instr__valid ...) as "___05F".
namespace {

const int64_t MAGIC_READY = 0x7465726e52454459LL;  // "ternREDY"
const int64_t CMD_RUN = 1;
enum Status : int64_t { DONE = 0, TIMEOUT = 1, STOPPED = 2, MORE = 3 };
const int HEADER_WORDS = 16;
const int STREAMS = 4;  // instr, act, wgt, out

int in_fd = 0, out_fd = 1;

bool read_all(void* buf, size_t n) {
    char* p = static_cast<char*>(buf);
    while (n) {
        ssize_t k = read(in_fd, p, n);
        if (k <= 0) return false;
        p += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

void write_all(const void* buf, size_t n) {
    const char* p = static_cast<const char*>(buf);
    while (n) {
        ssize_t k = write(out_fd, p, n);
        if (k <= 0) {
            perror("tern_harness: write");
            std::exit(3);
        }
        p += k;
        n -= static_cast<size_t>(k);
    }
}

// Ports: Verilator gives integral types up to 64 bits and VlWide<N> (32-bit words) above.
template <typename T>
typename std::enable_if<std::is_integral<T>::value>::type put(T& port, const uint8_t* b, size_t n) {
    uint64_t v = 0;
    std::memcpy(&v, b, std::min<size_t>(n, 8));
    port = static_cast<T>(v);
}

template <std::size_t N>
void put(VlWide<N>& port, const uint8_t* b, size_t n) {
    for (size_t i = 0; i < N; ++i) {
        uint32_t w = 0;
        if (4 * i < n) std::memcpy(&w, b + 4 * i, std::min<size_t>(4, n - 4 * i));
        port[i] = w;
    }
}

template <typename T>
typename std::enable_if<std::is_integral<T>::value>::type get(const T& port, uint8_t* b, size_t n) {
    uint64_t v = static_cast<uint64_t>(port);
    std::memset(b, 0, n);
    std::memcpy(b, &v, std::min<size_t>(n, 8));
}

template <std::size_t N>
void get(const VlWide<N>& port, uint8_t* b, size_t n) {
    std::memset(b, 0, n);
    for (size_t i = 0; i < N && 4 * i < n; ++i) {
        uint32_t w = port[i];
        std::memcpy(b + 4 * i, &w, std::min<size_t>(4, n - 4 * i));
    }
}

struct StreamTiming {
    std::vector<int32_t> gaps;        // gap_i (empty: all 0)
    std::vector<int64_t> not_before;  // max(latency + floor(i / rate), at_i) (empty: 0)
    std::vector<uint8_t> withdrawn;   // bit c: the environment side is low in cycle c (empty: never)
    std::vector<uint8_t> garbage;     // random payloads, in the order they are driven (empty: none)
    int64_t n_entries = 0, n_withdrawn = 0, n_garbage = 0, garbage_used = 0;
    bool exhausted = false;           // asked for more than was sent

    int64_t avail(int64_t i, int64_t prev) {
        int64_t g = 0, nb = 0;
        if (i >= n_entries && (!gaps.empty() || !not_before.empty())) {
            exhausted = true;
            return prev + 1;
        }
        if (!gaps.empty()) g = gaps[static_cast<size_t>(i)];
        if (!not_before.empty()) nb = not_before[static_cast<size_t>(i)];
        return std::max(prev + 1 + g, nb);
    }

    bool off(int64_t c) {
        if (withdrawn.empty()) return false;
        if (c >= n_withdrawn) {
            exhausted = true;
            return false;
        }
        return (withdrawn[static_cast<size_t>(c >> 3)] >> (c & 7)) & 1;
    }

    const uint8_t* next_garbage(size_t bytes) {
        if (garbage_used >= n_garbage) {
            exhausted = true;
            return nullptr;
        }
        return garbage.data() + static_cast<size_t>(garbage_used++) * bytes;
    }
};

struct Case {
    int64_t n[3] = {0, 0, 0};  // transfers of instr, act, wgt
    int64_t max_cycles = 0, stop_at = -1;
    size_t bytes[3] = {8, 0, 0};  // payload bytes of instr, act, wgt
    size_t out_bytes = 0, perf_bytes = 0;
    StreamTiming timing[STREAMS];
    std::vector<uint8_t> payload[3];
};

struct Harness {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vtop> top;

    Harness() : ctx(new VerilatedContext), top(new Vtop{ctx.get()}) {
        // start_bench of hw/flows/cocotb.py: every input low, rst high for the first rising edge
        top->clk = 0;
        top->rst = 1;
        idle_inputs();
        top->eval();
        step();
        top->rst = 0;
    }

    ~Harness() { top->final(); }

    void idle_inputs() {
        top->instr___05Fvalid = 0;
        top->act___05Fvalid = 0;
        top->wgt___05Fvalid = 0;
        top->out___05Fready = 0;
    }

    // one rising edge; the falling edge is where inputs are written (evaluated with the next settle)
    void step() {
        top->clk = 1;
        top->eval();
        top->clk = 0;
    }

    void set_valid(int k, bool v) {
        if (k == 0) top->instr___05Fvalid = v;
        else if (k == 1) top->act___05Fvalid = v;
        else top->wgt___05Fvalid = v;
    }

    bool ready(int k) const {
        if (k == 0) return top->instr___05Fready;
        if (k == 1) return top->act___05Fready;
        return top->wgt___05Fready;
    }

    void put_payload(int k, const uint8_t* b, size_t n) {
        if (k == 0) put(top->instr___05Fpayload, b, n);
        else if (k == 1) put(top->act___05Fpayload, b, n);
        else put(top->wgt___05Fpayload, b, n);
    }

    // run_core of hw/backends/drive.py
    void run(Case& cs) {
        // bench.reset(): rst high for one rising edge
        top->rst = 1;
        top->eval();
        step();
        top->rst = 0;

        int64_t done_n[3] = {0, 0, 0};
        int64_t avail[3];
        bool shown[3];  // whether the bus holds the next item (not garbage)
        std::vector<int64_t> cyc[3];
        std::vector<int64_t> out_cyc;
        std::vector<uint8_t> out_payload;
        std::vector<uint8_t> perf(cs.perf_bytes, 0);
        int64_t error = 0;
        for (int k = 0; k < 3; ++k) {
            cyc[k].reserve(static_cast<size_t>(cs.n[k]));
            avail[k] = cs.timing[k].avail(0, -1);
            set_valid(k, false);
            if (cs.n[k] > 0) put_payload(k, cs.payload[k].data(), cs.bytes[k]);
            shown[k] = cs.n[k] > 0;
        }
        StreamTiming& ot = cs.timing[3];
        int64_t out_n = 0, out_avail = ot.avail(0, -1);
        top->out___05Fready = 0;
        bool valid[3] = {false, false, false};
        bool rdy = false;
        bool fired[3];
        int64_t c = 0;
        Status why;
        std::vector<uint8_t> buf(cs.out_bytes);
        while (true) {
            if (cs.stop_at >= 0 && c >= cs.stop_at) { why = STOPPED; break; }
            if (c >= cs.max_cycles) { why = TIMEOUT; break; }
            for (int k = 0; k < 3; ++k) {
                StreamTiming& t = cs.timing[k];
                bool v = done_n[k] < cs.n[k] && c >= avail[k] && !t.off(c);
                if (!t.garbage.empty() && done_n[k] < cs.n[k]) {
                    if (v && !shown[k]) {
                        put_payload(k, cs.payload[k].data() + static_cast<size_t>(done_n[k]) * cs.bytes[k],
                                    cs.bytes[k]);
                        shown[k] = true;
                    } else if (!v) {
                        const uint8_t* g = t.next_garbage(cs.bytes[k]);
                        if (g != nullptr) put_payload(k, g, cs.bytes[k]);
                        shown[k] = false;
                    }
                }
                if (v != valid[k]) { set_valid(k, v); valid[k] = v; }
            }
            bool r = c >= out_avail && !ot.off(c);
            if (r != rdy) { top->out___05Fready = r; rdy = r; }
            if (cs.timing[0].exhausted || cs.timing[1].exhausted || cs.timing[2].exhausted || ot.exhausted) {
                why = MORE;
                break;
            }
            top->eval();
            for (int k = 0; k < 3; ++k) fired[k] = valid[k] && ready(k);
            if (rdy && top->out___05Fvalid) {
                get(top->out___05Fpayload, buf.data(), cs.out_bytes);
                out_payload.insert(out_payload.end(), buf.begin(), buf.end());
                out_cyc.push_back(c);
                ++out_n;
                out_avail = ot.avail(out_n, c);
                if (ot.exhausted) { why = MORE; break; }
            }
            if (done_n[0] == cs.n[0] && done_n[1] == cs.n[1] && done_n[2] == cs.n[2] && top->idle) {
                get(top->perf, perf.data(), cs.perf_bytes);
                error = top->error;
                why = DONE;
                break;
            }
            step();
            for (int k = 0; k < 3; ++k) {
                if (!fired[k]) continue;
                cyc[k].push_back(c);
                ++done_n[k];
                avail[k] = cs.timing[k].avail(done_n[k], c);
                if (done_n[k] < cs.n[k]) {
                    put_payload(k, cs.payload[k].data() + static_cast<size_t>(done_n[k]) * cs.bytes[k],
                                cs.bytes[k]);
                    shown[k] = true;
                }
            }
            ++c;
        }
        // release(): one more cycle, then every valid and ready low
        top->eval();
        step();
        idle_inputs();

        int64_t head[8] = {why, c, error, done_n[0], done_n[1], done_n[2], out_n, 0};
        write_all(head, sizeof head);
        write_all(perf.data(), perf.size());
        for (int k = 0; k < 3; ++k) write_all(cyc[k].data(), cyc[k].size() * sizeof(int64_t));
        write_all(out_cyc.data(), out_cyc.size() * sizeof(int64_t));
        write_all(out_payload.data(), out_payload.size());
    }
};

bool read_case(Case& cs) {
    int64_t h[HEADER_WORDS];
    if (!read_all(h, sizeof h) || h[0] != CMD_RUN) return false;
    cs.n[0] = h[1]; cs.n[1] = h[2]; cs.n[2] = h[3];
    int64_t n_out = h[4];
    cs.max_cycles = h[5];
    cs.stop_at = h[6];
    for (int k = 0; k < 3; ++k) cs.bytes[k] = static_cast<size_t>(h[7 + k]);
    cs.out_bytes = static_cast<size_t>(h[10]);
    cs.perf_bytes = static_cast<size_t>(h[11]);
    int64_t n_withdrawn = h[12], n_garbage = h[13];
    for (int s = 0; s < STREAMS; ++s) {
        int64_t t[4];  // gaps, not_before, withdrawn, garbage sent
        if (!read_all(t, sizeof t)) return false;
        StreamTiming& st = cs.timing[s];
        st = StreamTiming();
        st.n_entries = s < 3 ? cs.n[s] + 1 : n_out;
        size_t n = static_cast<size_t>(st.n_entries);
        if (t[0]) {
            st.gaps.resize(n);
            if (!read_all(st.gaps.data(), n * sizeof(int32_t))) return false;
        }
        if (t[1]) {
            st.not_before.resize(n);
            if (!read_all(st.not_before.data(), n * sizeof(int64_t))) return false;
        }
        if (t[2]) {
            st.n_withdrawn = n_withdrawn;
            st.withdrawn.resize(static_cast<size_t>((n_withdrawn + 7) / 8));
            if (!read_all(st.withdrawn.data(), st.withdrawn.size())) return false;
        }
        if (t[3] && s < 3) {
            st.n_garbage = n_garbage;
            st.garbage.resize(static_cast<size_t>(n_garbage) * cs.bytes[s]);
            if (!read_all(st.garbage.data(), st.garbage.size())) return false;
        }
    }
    for (int k = 0; k < 3; ++k) {
        cs.payload[k].resize(static_cast<size_t>(cs.n[k]) * cs.bytes[k]);
        if (!read_all(cs.payload[k].data(), cs.payload[k].size())) return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    // results go to the original stdout; anything the model prints goes to stderr (the log)
    out_fd = dup(1);
    dup2(2, 1);
    Verilated::commandArgs(argc, argv);
    Harness h;
    write_all(&MAGIC_READY, sizeof MAGIC_READY);
    Case cs;
    while (read_case(cs)) h.run(cs);
    return 0;
}

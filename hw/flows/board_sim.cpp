// The simulated board of `tern board-sim`: the Verilated board top (hw.rtl.board.TernBoard, top module
// tern_board, Verilator prefix Vtop) with its UART pins bridged to a file descriptor (the master side of
// a pseudo-terminal, given as stdin = stdout) bit by bit: every byte read from the descriptor is
// driven onto `rx` as an 8N1 frame of DIVISOR (argv[1]) clock cycles per bit (start bit, 8 data bits LSB first,
// stop bit), and `tx` is sampled in the middle of each bit of every frame the board sends (a low stop
// bit is reported on stderr and the byte dropped), each received byte written to the descriptor.
// Built by hw/flows/verilator_harness.py (build_harness(source=...)), run by sw/cli/board_sim.py.
//
// The clock only advances while something happens: when the core is idle, no byte is being sent or
// received and the line has been quiet for a while, the bridge waits for the host's next byte (poll).
// So it does when the core is not idle but both lines have been quiet for STALLED cycles: a core that
// computes sends results (its output FIFO drains onto tx) long before that, so it waits for input
// the host has not sent (a host that stopped mid-program); the clock stops with it instead of
// spinning. At end of input, a hangup, SIGTERM or SIGINT the program exits 0. stderr: the log; at
// exit one line of figures (simulated cycles, bytes received on rx and sent on tx).
#include "Vtop.h"
#include "verilated.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>

// Quiet line cycles after which a core that is not idle is taken to wait for the host (see above).
static const uint64_t STALLED = 1u << 20;

static volatile sig_atomic_t stop_requested = 0;
static void on_term(int) { stop_requested = 1; }

int main(int argc, char** argv) {
    // argv[1]: the divisor the gateware was built with (clock cycles per UART bit)
    const int div = argc > 1 ? std::atoi(argv[1]) : 0;
    if (div < 4) {
        std::fprintf(stderr, "usage: %s DIVISOR (clock cycles per UART bit, >= 4)\n", argv[0]);
        return 2;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    auto top = new Vtop;
    uint64_t cycle = 0, bytes_in = 0, bytes_out = 0;
    auto tick = [&]() {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
        ++cycle;
    };
    top->clk = 0;
    top->rx = 1;
    top->rst = 1;
    top->eval();
    tick();
    top->rst = 0;
    for (int i = 0; i < 4; ++i) tick();

    std::deque<uint8_t> inbox;
    // rx serializer: frame bits left (0: idle), cycles left in the current bit, the frame
    int rx_bits = 0, rx_timer = 0;
    uint16_t rx_frame = 0;
    // tx deserializer: 0 idle, else the bit being sampled (1 start .. 10 stop); cycles to the sample
    int tx_state = 0, tx_timer = 0;
    uint16_t tx_frame = 0;
    uint64_t quiet = 0;
    bool eof = false;
    uint8_t buf[4096];

    while (!stop_requested) {
        // host -> board: take what the descriptor has (without blocking while anything is going on)
        if (inbox.empty() && rx_bits == 0) {
            bool idle = (top->idle && tx_state == 0 && quiet > 30u * div) || quiet > STALLED;
            if (eof && idle) break;
            struct pollfd p = {0, POLLIN, 0};
            int r = eof ? 0 : poll(&p, 1, idle ? 50 : 0);
            if (r > 0) {
                ssize_t k = read(0, buf, sizeof buf);
                if (k > 0) {
                    inbox.insert(inbox.end(), buf, buf + k);
                    bytes_in += static_cast<uint64_t>(k);
                } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
                    eof = true;   // EIO: nobody holds the terminal's other side
                }
            } else if (r < 0 && errno != EINTR) {
                eof = true;
            }
        }
        if (rx_bits == 0 && !inbox.empty()) {
            rx_frame = static_cast<uint16_t>((inbox.front() << 1) | (1u << 9));   // start 0, data, stop 1
            inbox.pop_front();
            rx_bits = 10;
            rx_timer = div;
        }
        top->rx = rx_bits ? (rx_frame & 1) : 1;
        tick();
        if (rx_bits && --rx_timer == 0) {
            rx_frame >>= 1;
            --rx_bits;
            rx_timer = div;
        }
        // board -> host
        int line = top->tx;
        if (tx_state == 0) {
            if (!line) {
                tx_state = 1;
                tx_timer = div / 2;   // to the middle of the start bit
                tx_frame = 0;
            }
        } else if (--tx_timer == 0) {
            tx_frame |= static_cast<uint16_t>(line << (tx_state - 1));
            tx_timer = div;
            if (++tx_state == 11) {
                tx_state = 0;
                if ((tx_frame & 1) == 0 && (tx_frame >> 9) == 1) {
                    uint8_t byte = static_cast<uint8_t>(tx_frame >> 1);
                    if (write(1, &byte, 1) == 1) ++bytes_out;
                } else {
                    std::fprintf(stderr, "board-sim: framing error on tx at cycle %llu\n",
                                 static_cast<unsigned long long>(cycle));
                }
            }
        }
        quiet = (rx_bits || tx_state || !line) ? 0 : quiet + 1;
    }
    std::fprintf(stderr, "board-sim: %llu cycles, %llu bytes in, %llu bytes out\n",
                 static_cast<unsigned long long>(cycle), static_cast<unsigned long long>(bytes_in),
                 static_cast<unsigned long long>(bytes_out));
    top->final();
    delete top;
    return 0;
}

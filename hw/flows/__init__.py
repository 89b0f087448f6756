"""Tool flows around the RTL: Verilog export, Yosys statistics, FPGA bitstream builds, and the
Verilator/cocotb toolchain (discovery, builds, runs)."""

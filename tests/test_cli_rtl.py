"""``tern rtl`` (sw/cli/rtl.py): bad output paths are one line with exit code 2 (writing Verilog is
tested in tests/test_export.py)."""

from helpers import bad_input_test

test_bad_output_is_one_line_exit_2 = bad_input_test("""
    rtl => -o/--output
    rtl -o out.txt => must end in .v
    rtl -o /nonexistent-dir/out.v => does not exist
""")

"""Random differential verification: case generators (:mod:`hw.verify.generate`) and the RTL vs
simulator vs integer-reference comparison (:mod:`hw.verify.differential`)."""

"""tape: a typed program compiled to a flat instruction tape, and the numba VM that runs it.

Owns the opcode table (`opcodes`, numbered by the registry), the compiler (`compile`), batch
compilation of one template over many parameter sets (`template`), the disassembler (`disasm`),
the kernels of every built-in (`kernels_elementwise`, `kernels_rolling`, `kernels_indicators`,
gathered in `kernels`), the table of kernel addresses (`kernel_table`), the generated callers the
dispatch loop uses (`callers`, written by `python -m autostrat.tape.gen_callers`) and the dispatch
loop (`vm`).

Imports: lang and the core modules. Its numba modules import only other numba modules and the
opcode and registry tables (tests/test_architecture.py).
"""

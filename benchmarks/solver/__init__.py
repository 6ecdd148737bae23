"""The solver benchmark (``benchmarks/bench_solver.py``) in parts: ``measure`` (wall/CPU time and peak RSS of one
call, the machine), ``problems`` (real BEIR sets and synthetic corpora), ``fits`` (each implementation's fits,
timed and scored), ``targets`` (the targets as data, and the Targets section), ``render`` (Markdown)."""

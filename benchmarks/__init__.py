"""Speed and memory benchmarks for Fisher collection and the CHITA solvers (`python -m benchmarks.run`)."""

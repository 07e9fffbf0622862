"""Hydra entry point: `python run.py pruner=chita sparsity=0.9` (the same as the `chitalab` command; see docs/usage.md)."""

from chitalab.__main__ import main

if __name__ == "__main__":
    main()

"""Runs: the config reader (`config`), jobs (`job`), the one-shot and gradual run kinds,
the results schema (`results`) and `main.run`. Import the modules themselves: this package
imports nothing, so the report can read results without loading Lightning."""

"""Offline work: evaluation, tuning, benchmarks, load tests, quantization, training."""

"""Benchmarks: poisonbench (detection on real material + generated poison), baselines, speed."""

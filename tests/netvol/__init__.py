"""A simulated network volume: a latency-injecting passthrough FUSE file system for tests and benchmarks."""

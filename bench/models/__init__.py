"""Source files archived into the benchmark's .mar files (handler and model definition)."""

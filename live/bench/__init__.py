"""Benchmarks behind ``mimicam bench``: the mesh engine, FOMM runtimes, the live pipeline, the
offline job, and the fidelity meter. Never imported by the application itself."""

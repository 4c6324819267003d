"""Model side of mimicam: the FOMM network, checkpoints, export and runtimes."""

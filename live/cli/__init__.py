"""Command line: the ``mimicam`` entry point (:mod:`live.cli.main`), one module per
sub-command, and the process set-up (:mod:`live.blas`, :mod:`live.cli.native_logs`)."""

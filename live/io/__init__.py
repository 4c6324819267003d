"""Video and camera I/O: decoding and encoding (:mod:`live.io.video`), capture sources
(:mod:`live.io.capture`), output sinks (:mod:`live.io.sinks`), the preview overlay and hotkeys,
and the bounded prefetch thread (:mod:`live.io.threads`)."""

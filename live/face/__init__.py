"""Face finding and tracking: MediaPipe detection and face mesh, the square face crop with its
crop-to-frame transform (:mod:`live.face.tracking`), portraits and the portrait library
(:mod:`live.face.portraits`)."""

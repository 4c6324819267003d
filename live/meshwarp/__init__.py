"""Building blocks of the weight-free ``mesh`` engine (see :mod:`live.engines.mesh`).

- :mod:`live.meshwarp.topology`: the triangles (MediaPipe's face tesselation, fans and strips
  over the eye and mouth holes, Delaunay rings around the face out to the image border).
- :mod:`live.meshwarp.motion`: relative motion as pure numpy functions (similarity fits,
  driving displacement mapped into the portrait, eyelids, lips, irises, the outer rings).
- :mod:`live.meshwarp.warp`: the piecewise-affine warp (a rasterised triangle-index map,
  closed-form affines, one ``cv2.remap``).
- :mod:`live.meshwarp.mouth`: the mouth interior shown when a closed mouth opens.
"""

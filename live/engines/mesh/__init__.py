"""The weight-free ``mesh`` engine (:mod:`live.engines.mesh.engine`) and its building blocks.

- :mod:`live.engines.mesh.topology`: the triangles (MediaPipe's face tesselation, fans and
  strips over the eye and mouth holes, Delaunay rings around the face out to the image border).
- :mod:`live.engines.mesh.motion`: relative motion as pure numpy functions (similarity fits,
  driving displacement mapped into the portrait, eyelids, lips, irises, the outer rings).
- :mod:`live.engines.mesh.warp`: the piecewise-affine warp (a rasterised triangle-index map,
  closed-form affines, one ``cv2.remap``).
- :mod:`live.engines.mesh.mouth`: the mouth interior shown when a closed mouth opens.
"""

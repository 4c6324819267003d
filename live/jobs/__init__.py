"""The jobs: the live pipeline (:mod:`live.jobs.pipeline`), the offline animation
(:mod:`live.jobs.animate`) and the demo (:mod:`live.jobs.demo`, with its scripted motion)."""

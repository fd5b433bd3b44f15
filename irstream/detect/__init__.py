"""The detection stage: a frame in, its targets out.

preprocess (16-bit AGC, ignore masks) -> the model's map (irstream.model) -> targets
(connected components, the learnt on-screen-text mask, optional temporal evidence).
`Detector` (detector.py) wires them; each part's config sits beside it.
"""

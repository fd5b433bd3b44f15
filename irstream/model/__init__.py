"""The model stage: architectures are in irstream.model.registry; here weights, runtimes, preprocessing, the segmenter and the Detector that ties them together."""

"""Frames in: sources (files, image sequences, cameras, streams), the reader thread, image files."""

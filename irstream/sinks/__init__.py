"""Results out: the worker thread each output runs in, files, ZeroMQ, the message schema, drawing, the preview window."""

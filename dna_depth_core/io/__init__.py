"""Files the project writes and reads: atomic writes, checkpoints, the ONNX format, the authors' checkpoints."""

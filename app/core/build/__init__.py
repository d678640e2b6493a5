"""Making GGUF files: converting checkpoints with llama.cpp's converter."""

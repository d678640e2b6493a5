"""Reading models: GGUF and safetensors headers, ggml types, llama.cpp's per-tensor quant recipe, HF architectures, the catalog, and one ModelInfo from any source."""

"""The machine: CPU and its instruction sets, RAM, GPUs and their memory, what llama.cpp can offload to."""

"""The machine: CPU and its instruction sets, RAM, GPUs and their memory, what llama.cpp can offload to.

``hardware`` assembles the profile from ``cpu``, ``gpus`` (AMD, Apple), ``bandwidth`` and ``probe``
— a child process, cached, that asks ``nvml`` and ``offload`` (llama.cpp). ``sampler`` is the live
child that samples RAM, CPU and VRAM; ``sampler_client`` is the one handle on it that every view
shares. NVML and llama.cpp are only ever opened in those children, never in the window's process.
"""

"""TailorLM: which language model, at which quantization, fits this machine — and run it offline."""

__version__ = "0.1.0"

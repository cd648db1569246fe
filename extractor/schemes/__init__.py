"""Training schemes built on the pipeline: chains, quantized and slimmable students."""

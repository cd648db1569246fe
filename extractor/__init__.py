"""extractor: black-box model-extraction distillation."""

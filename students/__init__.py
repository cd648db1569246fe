"""Compact students, distillation losses and the training loop."""

"""Choosing which images to buy next: strategies that score the pool with a trained student."""

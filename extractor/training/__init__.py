"""Training a student on stored answers: data, answers, views, the probe, parents, the pipeline."""

"""Labelling jobs: plan which images to buy, send them to the teacher, commit the answers."""

"""Annotation front ends built on rewardlab: the Gradio app and the Argilla bridge."""

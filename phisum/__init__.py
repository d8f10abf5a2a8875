"""Shared code for the Phi-2 QLoRA DialogSum pipeline: params, data, model, generation, scoring."""

"""Training: recipes, the LoRA setup, the TRL trainer run, and the adapter folder it writes."""

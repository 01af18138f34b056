"""Training data (sources → questions with per-model outcomes, battles) and router fitting."""

"""Recording what a collector receives (raw frames and REST answers) and feeding it back."""

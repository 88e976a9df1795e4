"""Neural building blocks (no model-level logic): masks, positions, attention, convolution, subsampling."""

"""Training package of the defect classifier (torch); `evaluate` and `data` need only numpy and Pillow."""

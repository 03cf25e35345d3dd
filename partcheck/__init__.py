"""partcheck: automated visual quality inspection of manufactured parts."""

__version__ = "0.1.0"

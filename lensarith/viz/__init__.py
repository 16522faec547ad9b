"""Pictures of results. Plotting libraries are imported only when a renderer runs."""

from .heatmap import heatmap as heatmap

__all__ = ["heatmap"]

"""CNN Architecture Explorer: the library behind the app (never imports streamlit outside ``explorer.ui``)."""
from . import catalog
from .analysis import Analysis, analyze

__all__ = ["catalog", "analyze", "Analysis"]

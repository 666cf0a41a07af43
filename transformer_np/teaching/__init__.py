r"""Teaching: ``tour`` (the source document's model run end to end, every formula checked against its
loop-level version on the model's real tensors) and ``exercises`` (the checkers of the notebooks' exercises).
"""

from . import exercises
from .tour import Tour, run_tour

__all__ = ["Tour", "exercises", "run_tour"]

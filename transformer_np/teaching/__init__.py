r"""Teaching: ``tour`` (the source document's model run end to end, every formula checked against its
loop-level version on the model's real tensors), ``exercises`` (the checkers of the notebooks' exercises),
``table1`` (the paper's Table 1) and ``peers`` (the encoder written picoGPT's way, timed by ``bench forward``).
"""

from . import exercises
from .tour import Tour, run_tour

__all__ = ["Tour", "exercises", "run_tour"]

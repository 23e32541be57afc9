"""Old home of the image sets; they live in :mod:`voiceconv.images.data` now.

Kept so that ``from voiceconv.data.images import ShapesDataset`` and the submodules
``voiceconv.data.images.shapes|sets|folders`` keep working (aliases of the new ones).
"""

from voiceconv.images.data import *  # noqa: F403
from voiceconv.images.data import __all__  # noqa: F401

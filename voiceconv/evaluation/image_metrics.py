"""Old path of :mod:`voiceconv.images.metrics`, kept so that old imports and saved models keep working.

The module object is the new one (an alias in sys.modules), so every name,
including classes that :func:`~voiceconv.models.load_model` rebuilds from a
checkpoint written under the old path, resolves to the same object.
"""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("voiceconv.images.metrics")

"""The voiceconv web app (optional extra ``app``: Gradio).

``voiceconv-app --runs runs/`` serves a page to convert (upload or record), train
(with progress, Stop and Resume) and evaluate, over :class:`AppService`, which holds
all the logic and is usable without a browser. Nothing here imports gradio at module
level except :mod:`voiceconv.app.ui`, so the service works without the extra.
"""

from voiceconv.app.runs import RunEntry, RunIndex, resolve_inside
from voiceconv.app.service import AppService, TrainingBusy, TrainingJob

__all__ = ["AppService", "RunEntry", "RunIndex", "TrainingBusy", "TrainingJob", "resolve_inside"]

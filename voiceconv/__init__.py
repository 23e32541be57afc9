"""voiceconv: non-parallel voice conversion with CycleGANs over log-mel spectrograms.

Data flows one way, and so do imports: ``audio`` -> ``data`` -> ``models`` ->
``vocoders`` -> ``training`` -> ``conversion`` -> ``evaluation`` -> ``cli``.
A room may import the rooms before it, never those after it.
"""

__version__ = "0.1.0"

"""Audio file input and output through ``soundfile`` (libsndfile), with plain-word errors.

Every way an input file can be unusable (missing, empty, a PNG renamed ``.wav``, a
cut-off header, NaN samples, silence, too short, an absurd sample rate) raises
:class:`~voiceconv.errors.AudioError` whose one-line message names the file and
says what is wrong, so that corpus tools can report the file and move on.

We read only through ``soundfile`` (never ``torchaudio.load``, whose back end
varies between installs and versions): WAV/FLAC/OGG (Vorbis, Opus) and MP3 with
libsndfile >= 1.1. Writes are atomic: a crash never leaves a partial file.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from voiceconv.audio.processing import (
    SILENCE_DBFS,
    check_finite,
    is_silent,
    peak_dbfs,
    resample,
)
from voiceconv.errors import AudioError, OutputExists
from voiceconv.utils.atomic import DestinationExists, atomic_path

MIN_SAMPLE_RATE: int = 1000
"""Lowest sample rate accepted, in a file or requested (Hz)."""

MAX_SAMPLE_RATE: int = 384000
"""Highest sample rate accepted, in a file or requested (Hz)."""

WRITE_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
}
"""Extensions :func:`save_audio` writes, with libsndfile format and default subtype."""

# Leading bytes of containers libsndfile reads: a file that starts like one of these
# but cannot be opened is damaged, not "some other kind of file".
_AUDIO_MAGIC: tuple[bytes, ...] = (
    b"RIFF",  # WAV
    b"RIFX",  # big-endian WAV
    b"RF64",  # 64-bit WAV
    b"riff",  # Sony Wave64
    b"FORM",  # AIFF
    b"fLaC",  # FLAC
    b"OggS",  # Ogg (Vorbis, Opus, FLAC)
    b"ID3",  # MP3 with an ID3v2 tag
    b".snd",  # Sun AU
    b"caff",  # Apple CAF
    b"NIST_1A",  # NIST SPHERE
)

# Common non-audio files that end up in audio folders, named in the error message.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x93NUMPY", "a NumPy .npy array"),
)

_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples.

    ``frames`` is per channel; for MP3 libsndfile estimates it from the bit rate, so
    it can differ from what :func:`load_audio` finally decodes.
    """

    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


def _one_line(text: str) -> str:
    """Collapse whitespace (libsndfile messages sometimes hold newlines)."""
    return " ".join(str(text).split())


def _sndfile_reason(err: Exception) -> str:
    """libsndfile's own explanation of ``err``, on one line."""
    reason = getattr(err, "error_string", None) or str(err)
    return _one_line(reason).rstrip(".")


def _describe(head: bytes) -> tuple[bool, str | None]:
    """(looks like a known audio container, name of a known non-audio kind or None)."""
    if head.startswith(_AUDIO_MAGIC):
        return True, None
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return True, None  # MPEG audio frame sync (MP3 without a tag)
    for magic, kind in _OTHER_MAGIC:
        if head.startswith(magic):
            return False, kind
    if head and all(b in _TEXT_BYTES for b in head):
        return False, "text"
    return False, None


def _check_file(path: Path) -> bytes:
    """File-system checks done before libsndfile sees ``path``; returns its first bytes."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError(path, "file not found") from None
    except OSError as err:
        raise AudioError(path, f"cannot be read ({_one_line(err.strerror or err)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(path, "is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(path, "not a regular file")
    if st.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb") as fh:
            return fh.read(16)
    except OSError as err:
        raise AudioError(path, f"cannot be read ({_one_line(err.strerror or err)})") from None


def _open_problem(err: Exception, head: bytes) -> str:
    """Plain-words reason why libsndfile could not open a file starting with ``head``."""
    looks_audio, other = _describe(head)
    reason = _sndfile_reason(err)
    if getattr(err, "code", None) == 4:  # SFE_UNSUPPORTED_ENCODING
        return f"unsupported audio encoding (libsndfile: {reason})"
    if looks_audio:
        return f"truncated or corrupt header (libsndfile: {reason})"
    if other is not None:
        return f"not an audio file (looks like {other})"
    return "not an audio file (unrecognised format)"


def _check_rate(path: Path, sample_rate: int, what: str) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            path,
            f"{what} sample rate {sample_rate} Hz is outside "
            f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz",
        )


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[sf.SoundFile]:
    """Open ``path`` for reading, turning every failure into a plain-words AudioError."""
    head = _check_file(path)
    try:
        f = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(path, _open_problem(err, head)) from err
    except TypeError as err:  # soundfile wants rate/channels/subtype for headerless RAW
        raise AudioError(path, "headerless raw audio is not supported (no header)") from err
    with f:
        if f.channels < 1:
            raise AudioError(path, f"header declares {f.channels} channels")
        _check_rate(path, int(f.samplerate), "file's")
        yield f


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read a file's header (rate, channels, length, format) without decoding it.

    Raises :class:`AudioError` for the same file problems as :func:`load_audio`
    that a header shows (missing, empty, not audio, corrupt header, absurd rate,
    no samples); NaN, silence and length limits need :func:`load_audio`.
    """
    path = Path(path)
    with _opened(path) as f:
        info = AudioInfo(
            sample_rate=int(f.samplerate),
            channels=int(f.channels),
            frames=int(f.frames),
            duration=float(f.frames) / float(f.samplerate),
            format=str(f.format),
            subtype=str(f.subtype),
        )
    if info.frames <= 0:
        raise AudioError(path, "contains no audio samples (0 frames)")
    return info


def _requested_rate(path: Path, sample_rate: int | float | None) -> int | None:
    if sample_rate is None:
        return None
    if isinstance(sample_rate, bool) or not float(sample_rate).is_integer():
        raise AudioError(path, f"requested sample rate {sample_rate!r} is not a whole number of Hz")
    rate = int(sample_rate)
    _check_rate(path, rate, "requested")
    return rate


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int | None = None,
    *,
    mono: bool = True,
    min_samples: int = 1,
    allow_silent: bool = False,
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 samples in [-1, 1] and its sample rate.

    Integer PCM (8/16/24/32 bit) is scaled by libsndfile to [-1, 1); float files
    are taken as they are and then clipped to [-1, 1] (as a conversion to PCM
    would). With ``mono`` (default) channels are averaged into a ``(T,)`` array,
    otherwise the result is ``(channels, T)``. With ``sample_rate`` the signal is
    resampled (band-limited, :func:`voiceconv.audio.processing.resample`) and that
    rate is returned; otherwise the file's own rate.

    Raises :class:`AudioError` (one line: file and problem) for a missing, empty
    or non-audio file, a corrupt header or corrupt data, NaN/inf samples, a rate
    outside 1 kHz..384 kHz (in the file or requested), fewer than ``min_samples``
    samples after resampling (pass one analysis window, e.g. ``n_fft``), and a
    signal that is silent throughout (peak below
    :data:`~voiceconv.audio.processing.SILENCE_DBFS`, also after the downmix)
    unless ``allow_silent``.
    """
    path = Path(path)
    if min_samples < 1:
        raise ValueError(f"load_audio: min_samples must be >= 1, got {min_samples}")
    target = _requested_rate(path, sample_rate)
    with _opened(path) as f:
        file_rate = int(f.samplerate)
        if f.frames == 0:
            raise AudioError(path, "contains no audio samples (0 frames)")
        try:
            data = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(
                path, f"corrupt or truncated audio data (libsndfile: {_sndfile_reason(err)})"
            ) from err
    if data.shape[0] == 0:
        raise AudioError(path, "contains no audio samples (0 frames)")
    wav = np.ascontiguousarray(data.T)  # (C, T)
    check_finite(wav, path)
    np.clip(wav, -1.0, 1.0, out=wav)
    if not allow_silent and is_silent(wav):
        raise AudioError(
            path, f"all silent (peak {peak_dbfs(wav):.1f} dBFS, below {SILENCE_DBFS:.0f} dBFS)"
        )
    if mono and wav.shape[0] == 1:
        wav = wav[0]
    elif mono:
        wav = wav.mean(axis=0)
        if not allow_silent and is_silent(wav):
            raise AudioError(path, "silent after downmix to mono (channels cancel out)")
    rate = file_rate
    if target is not None and target != file_rate:
        wav = np.clip(resample(wav, file_rate, target), -1.0, 1.0)
        rate = target
    n = wav.shape[-1]
    if n < min_samples:
        raise AudioError(
            path,
            f"too short: {n} samples ({n / rate:.4f} s at {rate} Hz), need at least {min_samples}",
        )
    return wav.astype(np.float32, copy=False), rate


def save_audio(
    path: str | os.PathLike[str],
    wav: np.ndarray,
    sample_rate: int,
    *,
    subtype: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``(T,)`` or ``(channels, T)`` float samples to ``path`` atomically.

    The format follows the extension (``.wav``, ``.flac``; 16-bit PCM unless
    ``subtype`` names another libsndfile subtype, e.g. ``"PCM_24"`` or ``"FLOAT"``).
    Samples are clipped to [-1, 1] for every subtype, float ones included (PCM
    would saturate there anyway); NaN/inf samples, integer arrays, empty arrays and rates outside
    1 kHz..384 kHz raise :class:`AudioError`. The file appears complete or not at
    all (temporary file beside it, fsynced, then renamed). With ``overwrite=False`` a
    file at ``path``, even one that appeared while writing, is kept and
    :class:`~voiceconv.errors.OutputExists` is raised. Returns ``Path(path)``.
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(WRITE_FORMATS)
        raise AudioError(path, f"cannot write '{path.suffix}' files (use one of {known})")
    major, default_subtype = fmt
    subtype = default_subtype if subtype is None else subtype.upper()
    if not sf.check_format(major, subtype):
        raise AudioError(path, f"subtype {subtype!r} cannot be written as {major}")
    if isinstance(sample_rate, bool) or not float(sample_rate).is_integer():
        raise AudioError(path, f"sample rate {sample_rate!r} is not a whole number of Hz")
    _check_rate(path, int(sample_rate), "output")

    arr = np.asarray(wav)
    if arr.dtype.kind != "f":
        raise AudioError(path, f"expected float samples in [-1, 1], got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise AudioError(path, f"expected samples shaped (T,) or (channels, T), got {arr.shape}")
    if arr.ndim == 2 and arr.shape[0] > arr.shape[1]:
        raise AudioError(
            path,
            f"got shape {arr.shape}: more channels than samples; expected (channels, T)",
        )
    if arr.shape[-1] == 0:
        raise AudioError(path, "no samples to write")
    check_finite(arr, path)
    frames = np.ascontiguousarray(np.clip(np.atleast_2d(arr), -1.0, 1.0).T)  # (T, C)

    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            with sf.SoundFile(
                tmp,
                "w",
                samplerate=int(sample_rate),
                channels=frames.shape[1],
                format=major,
                subtype=subtype,
            ) as out:
                out.write(frames)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
    except DestinationExists:
        raise OutputExists(path, "appeared while converting (kept; use --overwrite / overwrite=True "
                                 "to replace it)") from None
    except (sf.LibsndfileError, OSError) as err:
        reason = _sndfile_reason(err) if isinstance(err, sf.LibsndfileError) else err.strerror
        raise AudioError(path, f"could not write ({_one_line(reason or err)})") from err
    return path

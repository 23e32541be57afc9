"""Feature cache: log-mel spectrograms of a corpus, computed once and reused.

Layout of a cache folder::

    cache/mel_config.json             MelConfig.to_dict() the features were made with
    cache/preprocess.json             audio clean-up options (trim_top_db, normalize)
    cache/manifest.jsonl              one JSON object per finished utterance
    cache/feats/<speaker>/<utt>.npy   float32 (n_mels, T) log-mel
    cache/stats/<speaker>.json        SpeakerStats of that speaker's cached mels
    cache/errors.log                  one line per file that could not be used

A manifest line holds ``speaker``, ``utt_id``, ``source`` (absolute audio path),
``feature`` (path relative to the cache folder, so a cache can be moved),
``n_frames``, ``duration_s`` (of the audio the features were made from, after
trimming), ``sample_rate`` and ``text``. If a speaker/utterance appears on
several lines (it was recomputed), the last line wins.

:func:`preprocess` is resumable and failure tolerant: each ``.npy`` is written
atomically and its manifest line appended (and flushed) as soon as it is done, so
an interrupted run loses at most the files in flight; a bad audio file is logged,
reported in the summary and skipped. A cache refuses features made with another
:class:`~voiceconv.audio.mel.MelConfig` (:class:`MelConfigMismatch`) or other
clean-up options (:class:`ConfigError`), since mixing them would silently feed a
model two kinds of numbers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from voiceconv.audio.mel import MelConfig, log_mel
from voiceconv.audio.preparation import NORMALIZE_CHOICES, Preparation
from voiceconv.audio.stats import SpeakerStats
from voiceconv.data.corpora import Utterance, check_name
from voiceconv.errors import AudioError, ConfigError, CorpusError, MelConfigMismatch, VoiceconvError
from voiceconv.utils.atomic import atomic_path, atomic_write_bytes, atomic_write_json

MEL_CONFIG_JSON = "mel_config.json"
PREPROCESS_JSON = "preprocess.json"
MANIFEST = "manifest.jsonl"
FEATS_DIR = "feats"
STATS_DIR = "stats"
ERRORS_LOG = "errors.log"

_MANIFEST_KEYS = ("speaker", "utt_id", "source", "feature", "n_frames", "duration_s", "sample_rate")


@dataclass(frozen=True)
class PreprocessSummary:
    """What one :func:`preprocess` run did.

    ``done``: utterances whose features were computed in this run;
    ``skipped_existing``: utterances already in the cache; ``failed``: ``(audio
    path, one-line message naming that path)`` for every file that could not be used.
    """

    done: int
    skipped_existing: int
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def usable(self) -> int:
        """Utterances of the corpus that now have features in the cache."""
        return self.done + self.skipped_existing


@dataclass(frozen=True)
class CacheEntry:
    """One manifest line: where an utterance came from and where its features are."""

    speaker: str
    utt_id: str
    source: Path
    feature: Path
    n_frames: int
    duration_s: float
    sample_rate: int
    text: str | None = None


# --------------------------------------------------------------------------- files


def feature_path(cache_dir: str | os.PathLike[str], speaker: str, utt_id: str) -> Path:
    """``cache_dir/feats/<speaker>/<utt_id>.npy``."""
    return Path(cache_dir) / FEATS_DIR / speaker / f"{utt_id}.npy"


def stats_path(cache_dir: str | os.PathLike[str], speaker: str) -> Path:
    """``cache_dir/stats/<speaker>.json``."""
    return Path(cache_dir) / STATS_DIR / f"{speaker}.json"


def read_mel_config(cache_dir: str | os.PathLike[str]) -> MelConfig:
    """The :class:`MelConfig` stored in a cache folder."""
    path = Path(cache_dir) / MEL_CONFIG_JSON
    if not path.is_file():
        raise CorpusError(
            Path(cache_dir), f"not a feature cache (no {MEL_CONFIG_JSON}); run voiceconv-preprocess"
        )
    try:
        return MelConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, ConfigError) as err:
        raise CorpusError(path, f"unreadable mel config ({err})") from None


def _entry_from_json(cache_dir: Path, rec: dict[str, Any]) -> CacheEntry:
    return CacheEntry(
        speaker=str(rec["speaker"]),
        utt_id=str(rec["utt_id"]),
        source=Path(rec["source"]),
        feature=cache_dir / rec["feature"],
        n_frames=int(rec["n_frames"]),
        duration_s=float(rec["duration_s"]),
        sample_rate=int(rec["sample_rate"]),
        text=rec.get("text"),
    )


def read_manifest(cache_dir: str | os.PathLike[str]) -> dict[tuple[str, str], CacheEntry]:
    """Manifest entries keyed by ``(speaker, utt_id)``; the last line of a key wins.

    A final line without its newline (a run killed while appending) is ignored; any
    other malformed line is a :class:`CorpusError` naming the manifest and line.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / MANIFEST
    entries: dict[tuple[str, str], CacheEntry] = {}
    if not path.is_file():
        return entries
    raw = path.read_text(encoding="utf-8")
    lines = raw.split("\n")
    complete = lines[:-1]  # the piece after the last newline is empty or truncated
    for n, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            missing = [k for k in _MANIFEST_KEYS if k not in rec]
            if missing:
                raise CorpusError(path, f"line {n}: missing {', '.join(missing)}")
            entry = _entry_from_json(cache_dir, rec)
        except (ValueError, TypeError, AttributeError):
            raise CorpusError(path, f"line {n}: not a manifest record") from None
        entries[(entry.speaker, entry.utt_id)] = entry
    return entries


def _repair_manifest(path: Path) -> None:
    """Drop a truncated last line so that new lines are not glued onto it."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        atomic_write_bytes(path, data[: cut + 1] if cut >= 0 else b"")


# --------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class _Result:
    """Outcome of one file (plain data, so it pickles back from a worker)."""

    source: str
    record: dict[str, Any] | None = None
    message: str = ""
    tb: str | None = None


def _init_worker() -> None:
    """Process-pool initialiser: one torch thread per worker (workers are the parallelism)."""
    import torch

    torch.set_num_threads(1)


def _compute_one(
    source: str,
    dest: str,
    speaker: str,
    utt_id: str,
    text: str | None,
    cfg_dict: dict[str, Any],
    trim_top_db: float | None,
    normalize: str | None,
) -> _Result:
    """Make and save the features of one file.

    Returns a :class:`_Result` holding the manifest record, or the one-line
    message (and, for an unexpected exception, the traceback). Errors are turned into strings here because project
    exceptions (with their two-argument constructors) do not survive pickling back
    from a worker process.
    """
    try:
        cfg = MelConfig.from_dict(cfg_dict)
        sr = cfg.sample_rate
        wav = Preparation(trim_top_db, normalize).load(source, sr, min_samples=cfg.n_fft)
        try:
            mel = np.asarray(log_mel(wav, cfg), dtype=np.float32)
        except AudioError as err:  # log_mel sees an array; name the file instead
            raise AudioError(source, err.problem) from None
        if not np.isfinite(mel).all():
            raise AudioError(source, "log-mel has non-finite values")
        with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
            np.save(fh, mel, allow_pickle=False)
        rec = {
            "speaker": speaker,
            "utt_id": utt_id,
            "source": source,
            "feature": Path(FEATS_DIR, speaker, f"{utt_id}.npy").as_posix(),
            "n_frames": int(mel.shape[1]),
            "duration_s": round(wav.size / sr, 6),
            "sample_rate": int(sr),
            "text": text,
        }
        return _Result(source, record=rec)
    except VoiceconvError as err:
        return _Result(source, message=str(err))
    except Exception as err:  # one odd file must not stop the run; keep the traceback
        return _Result(
            source, message=f"{source}: {err.__class__.__name__}: {err}", tb=traceback.format_exc()
        )


# --------------------------------------------------------------------------- preprocess


def _check_corpus(corpus: dict[str, list[Utterance]]) -> list[Utterance]:
    utts: list[Utterance] = []
    for speaker, items in corpus.items():
        check_name(speaker, "speaker name")
        seen: set[str] = set()
        for u in items:
            if u.speaker != speaker:
                raise ConfigError(
                    f"utterance {u.utt_id!r} of {u.speaker!r} listed under {speaker!r}"
                )
            check_name(u.utt_id, "utterance id")
            if u.utt_id in seen:
                raise ConfigError(f"utterance id {u.utt_id!r} of {speaker!r} listed twice")
            seen.add(u.utt_id)
            utts.append(u)
    if not utts:
        raise ConfigError("nothing to preprocess: the corpus has no utterances")
    return utts


def _prepare_cache(cache_dir: Path, mel_cfg: MelConfig, options: dict[str, Any]) -> None:
    """Create the cache folder, or check an existing one was made the same way."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    if (cache_dir / MEL_CONFIG_JSON).is_file():
        stored = read_mel_config(cache_dir)
        try:
            mel_cfg.check_same(stored, what=f"feature cache {cache_dir}")
        except MelConfigMismatch as err:
            raise MelConfigMismatch(f"{err}; use another cache folder") from None
    else:
        atomic_write_json(cache_dir / MEL_CONFIG_JSON, mel_cfg.to_dict())
    opt_path = cache_dir / PREPROCESS_JSON
    if opt_path.is_file():
        try:
            stored_opts = json.loads(opt_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CorpusError(opt_path, f"unreadable ({err})") from None
        if stored_opts != options:
            raise ConfigError(
                f"feature cache {cache_dir} was made with {stored_opts}, not {options}; "
                "use another cache folder"
            )
    else:
        atomic_write_json(opt_path, options)


def _log_failure(cache_dir: Path, message: str, tb: str | None) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(cache_dir / ERRORS_LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{stamp}\t{message}\n")
        if tb:
            fh.write("".join(f"    {line}\n" for line in tb.rstrip().splitlines()))


def _results(jobs: list[tuple[Any, ...]], workers: int) -> Iterator[_Result]:
    """Run :func:`_compute_one` on every job, yielding results as they finish.

    ``workers == 1`` (or a single job) runs in this process; otherwise a spawn-based
    process pool is used (fork is unsafe once torch/OpenMP threads exist).
    """
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            yield _compute_one(*job)
        return
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_init_worker
    )
    try:
        futures: dict[Future[Any], tuple[Any, ...]] = {
            pool.submit(_compute_one, *job): job for job in jobs
        }
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except Exception as err:  # e.g. a worker killed by the OS
                src = futures[fut][0]
                yield _Result(
                    src, message=f"{src}: worker failed ({err.__class__.__name__}: {err})"
                )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def preprocess(
    corpus: dict[str, list[Utterance]],
    cache_dir: str | os.PathLike[str],
    mel_cfg: MelConfig,
    *,
    workers: int = 2,
    trim_top_db: float | None = 40.0,
    normalize: str | None = "peak",
    progress: bool = True,
) -> PreprocessSummary:
    """Compute log-mel features of every utterance of ``corpus`` into ``cache_dir``.

    Each file is loaded at ``mel_cfg.sample_rate`` (mono), leading/trailing silence
    quieter than ``trim_top_db`` below the peak is cut (``None``: no trimming), the
    level is normalised (``"peak"``, ``"loudness"`` or ``None``), and
    :func:`~voiceconv.audio.mel.log_mel` is saved as float32 ``(n_mels, T)``. Files
    already in the cache (manifest line with the same source, and the ``.npy``
    present) are skipped. After the features, the
    :class:`~voiceconv.audio.stats.SpeakerStats` of every speaker with new features
    (or without a stats file) are recomputed over all of that speaker's cached mels.

    ``workers`` processes run in parallel (1: in this process; worker processes are
    spawned, which costs a few seconds of start-up, repaid on corpora of more than
    a few hundred files). Bad files are reported in the returned summary and
    ``errors.log`` and do not stop the run.
    """
    if normalize not in NORMALIZE_CHOICES:
        raise ConfigError(f"normalize must be one of {NORMALIZE_CHOICES}, not {normalize!r}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, not {workers}")
    utts = _check_corpus(corpus)
    cache = Path(cache_dir)
    options = {"trim_top_db": trim_top_db, "normalize": normalize}
    _prepare_cache(cache, mel_cfg, options)
    manifest = cache / MANIFEST
    _repair_manifest(manifest)
    entries = read_manifest(cache)

    jobs: list[tuple[Any, ...]] = []
    skipped = 0
    for u in utts:
        source = str(Path(u.path).resolve())
        dest = feature_path(cache, u.speaker, u.utt_id)
        old = entries.get((u.speaker, u.utt_id))
        if old is not None and str(old.source) == source and dest.is_file():
            skipped += 1
            continue
        jobs.append(
            (
                source,
                str(dest),
                u.speaker,
                u.utt_id,
                u.text,
                mel_cfg.to_dict(),
                trim_top_db,
                normalize,
            )
        )

    done = 0
    failed: list[tuple[Path, str]] = []
    touched: set[str] = set()
    if jobs:
        with (
            open(manifest, "a", encoding="utf-8") as man,
            tqdm(total=len(jobs), desc="preprocess", unit="utt", disable=not progress) as bar,
        ):
            for res in _results(jobs, workers):
                rec = res.record
                if rec is not None:
                    man.write(json.dumps(rec, sort_keys=True) + "\n")
                    man.flush()  # survives a killed run; no fsync (10 ms a line)
                    entries[(rec["speaker"], rec["utt_id"])] = _entry_from_json(cache, rec)
                    touched.add(rec["speaker"])
                    done += 1
                else:
                    failed.append((Path(res.source), res.message))
                    _log_failure(cache, res.message, res.tb)
                bar.update(1)

    for speaker in sorted(corpus):
        mine = sorted(
            (e for (s, _), e in entries.items() if s == speaker and e.feature.is_file()),
            key=lambda e: e.utt_id,
        )
        if mine and (speaker in touched or not stats_path(cache, speaker).is_file()):
            stats = SpeakerStats.from_mels(
                (_load_checked(e, mel_cfg.n_mels) for e in mine), source=cache
            )
            stats.save(stats_path(cache, speaker))
    return PreprocessSummary(done=done, skipped_existing=skipped, failed=sorted(failed))


# --------------------------------------------------------------------------- reading


def _load_checked(entry: CacheEntry, n_mels: int) -> np.ndarray:
    path = entry.feature
    if not path.is_file():
        raise CorpusError(path, "cached feature missing; rerun voiceconv-preprocess")
    try:
        mel = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CorpusError(path, f"unreadable cached feature ({err})") from None
    if mel.dtype != np.float32 or mel.shape != (n_mels, entry.n_frames):
        raise CorpusError(
            path,
            f"cached feature is {mel.dtype} {mel.shape}, manifest says float32 "
            f"({n_mels}, {entry.n_frames})",
        )
    return mel


class FeatureCache:
    """Read access to a folder written by :func:`preprocess`.

    The manifest is read once, when the object is made; make a new one to see
    utterances added later.
    """

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.root = Path(cache_dir)
        if not self.root.is_dir():
            raise CorpusError(self.root, "feature cache folder not found")
        self._mel_config = read_mel_config(self.root)
        self._by_speaker: dict[str, list[CacheEntry]] = {}
        for (speaker, _), entry in read_manifest(self.root).items():
            self._by_speaker.setdefault(speaker, []).append(entry)
        for items in self._by_speaker.values():
            items.sort(key=lambda e: e.utt_id)

    @property
    def mel_config(self) -> MelConfig:
        """The :class:`MelConfig` every feature in this cache was made with."""
        return self._mel_config

    @property
    def preparation(self) -> Preparation:
        """How the audio was trimmed and level-set before analysis (``preprocess.json``)."""
        path = self.root / PREPROCESS_JSON
        if not path.is_file():
            return Preparation.raw()
        try:
            return Preparation.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, ConfigError) as err:
            raise CorpusError(path, f"unreadable preprocessing options ({err})") from None

    @property
    def speakers(self) -> list[str]:
        """Speakers with at least one cached utterance, sorted."""
        return sorted(self._by_speaker)

    def utterances(self, speaker: str) -> list[CacheEntry]:
        """Manifest entries of ``speaker``, sorted by ``utt_id``."""
        if speaker not in self._by_speaker:
            raise CorpusError(
                self.root,
                f"speaker {speaker!r} not in cache; available: {', '.join(self.speakers) or 'none'}",
            )
        return list(self._by_speaker[speaker])

    def load_mel(self, speaker: str, utt_id: str) -> np.ndarray:
        """The float32 ``(n_mels, T)`` log-mel of one utterance."""
        for e in self.utterances(speaker):
            if e.utt_id == utt_id:
                return _load_checked(e, self._mel_config.n_mels)
        raise CorpusError(self.root, f"utterance {utt_id!r} of {speaker!r} not in cache")

    def load_mels(self, speaker: str) -> list[np.ndarray]:
        """All log-mels of ``speaker`` in ``utt_id`` order."""
        return [_load_checked(e, self._mel_config.n_mels) for e in self.utterances(speaker)]

    def stats(self, speaker: str) -> SpeakerStats:
        """The :class:`SpeakerStats` saved for ``speaker``."""
        self.utterances(speaker)  # unknown speaker -> clear error
        path = stats_path(self.root, speaker)
        if not path.is_file():
            raise CorpusError(path, "speaker statistics missing; rerun voiceconv-preprocess")
        return SpeakerStats.load(path)

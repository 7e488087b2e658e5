"""A thin ctypes wrapper around the libespeak-ng shipped inside the `espeakng-loader` wheel.

Why ctypes and this wheel: the default corpus must be buildable from `pip install` alone, with
no system package (apt espeak-ng) and no subprocess per utterance. The wheel carries the shared
library and its data directory; calling the library in-process in synchronous mode synthesizes
about a thousand times faster than real time.

libespeak-ng keeps global state (one current voice, one callback, one set of parameters), so
the library is initialised once per process and every synthesis runs under a module-level lock.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import numpy as np

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit()
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_LOCK = threading.Lock()


class EspeakError(RuntimeError):
    """libespeak-ng could not be loaded, initialised, or refused a voice or a text."""


class _Engine:
    """The process-wide library handle, its callback and the buffer the callback fills."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - a dependency of the project
            raise EspeakError("the espeakng-loader package is not installed") from e
        self.data_path = Path(espeakng_loader.get_data_path())
        lib_path = espeakng_loader.get_library_path()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise EspeakError(f"cannot load libespeak-ng from {lib_path}: {e}") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        # Seeds the noise generator (breathy voices) that espeak_Initialize seeds from the clock.
        self.set_rand_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self.set_rand_seed is not None:
            self.set_rand_seed.argtypes = [ctypes.c_long]
            self.set_rand_seed.restype = None

        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with {self.data_path}")
        self.lib = lib
        self.sample_rate = int(rate)
        self.version = (lib.espeak_Info(None) or b"unknown").decode()
        self.pid = os.getpid()
        self.chunks: list[np.ndarray] = []
        # Kept as an attribute: if this object were garbage collected, the C library would
        # call freed memory.
        self.callback = _SYNTH_CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self.callback)

    def _on_audio(self, wav: ctypes.Array, n_samples: int, _events: int) -> int:
        if n_samples > 0 and wav:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = continue synthesis


_engine: _Engine | None = None


def _get_engine() -> _Engine:
    """The engine of this process (a forked child re-initialises its own)."""
    global _engine
    with _LOCK:
        if _engine is None or _engine.pid != os.getpid():
            _engine = _Engine()
        return _engine


def trim_silence(
    audio: np.ndarray, sample_rate: int, margin_s: float = 0.1, threshold_db: float = -40.0
) -> np.ndarray:
    """Cut leading/trailing silence, leaving `margin_s` of quiet on each side.

    Where the signal has less than that margin (espeak-ng output starts within ~15 ms of the
    first phoneme), zeros are padded, so every utterance has the same short pause around it.
    Silence is anything below `threshold_db` relative to the utterance's peak.
    """
    if audio.size == 0:
        return audio
    peak = float(np.max(np.abs(audio)))
    if peak == 0.0:
        return audio[:0]
    loud = np.flatnonzero(np.abs(audio) > peak * 10 ** (threshold_db / 20))
    margin = round(margin_s * sample_rate)
    first, last = int(loud[0]), int(loud[-1]) + 1
    start, end = max(0, first - margin), min(audio.size, last + margin)
    pad_left = margin - (first - start)
    pad_right = margin - (end - last)
    return np.pad(audio[start:end], (pad_left, pad_right))


class Espeak:
    """Spanish (or any espeak-ng) speech synthesis: text in, float32 mono samples out.

    Instances are cheap handles on the single per-process library state.
    """

    def __init__(self) -> None:
        engine = _get_engine()
        self.sample_rate: int = engine.sample_rate
        self.version: str = engine.version
        self.data_path: Path = engine.data_path
        self._variant_set = frozenset(self.variants())

    def variants(self) -> list[str]:
        """Sorted names of the voice variants (files under `<data>/voices/!v`), e.g. m3, f2."""
        variant_dir = self.data_path / "voices" / "!v"
        return sorted(p.name for p in variant_dir.iterdir() if p.is_file())

    def synth(
        self,
        text: str,
        voice: str = "es",
        variant: str = "",
        rate: int = 175,
        pitch: int = 50,
        margin_s: float = 0.1,
        seed: int | None = None,
    ) -> np.ndarray:
        """Speak `text` with `voice` (es, es-419, ...) + `variant`; returns float32 samples
        in [-1, 1] at `self.sample_rate`, silence trimmed to `margin_s` on each side.

        rate: words per minute (espeak accepts 80..450); pitch: 0..100 (50 is the voice's own).
        seed: seeds espeak-ng's noise generator, which it otherwise seeds from the clock, so
        that variants with breath noise (whisper, f2, Alicia, ...) give the same samples in
        every run. Output also depends on state left by earlier calls (the pitch flutter
        phase): the same sequence of calls in a fresh process reproduces the same audio.
        """
        if variant and variant not in self._variant_set:
            # espeak-ng silently ignores an unknown variant and speaks with the base voice
            raise EspeakError(f"espeak-ng has no voice variant {variant!r}")
        name = f"{voice}+{variant}" if variant else voice
        engine = _get_engine()
        with _LOCK:
            lib = engine.lib
            if lib.espeak_SetVoiceByName(name.encode()) != 0:
                raise EspeakError(f"espeak-ng has no voice {name!r}")
            # Parameters are set after the voice: selecting a voice may reset them.
            lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            if seed is not None and engine.set_rand_seed is not None:
                engine.set_rand_seed(int(seed))
            data = text.encode("utf-8")
            engine.chunks = []
            err = lib.espeak_Synth(
                data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            chunks, engine.chunks = engine.chunks, []
        if err != 0:
            raise EspeakError(f"espeak_Synth failed with code {err} for {text!r}")
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        audio = np.concatenate(chunks).astype(np.float32) / 32768.0
        return trim_silence(audio, self.sample_rate, margin_s)

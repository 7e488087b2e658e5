"""`decode=beam`: torchaudio's CTC beam search (flashlight-text) with a word n-gram LM.

Our labels become the decoder's tokens one to one, in label order, so a custom alphabet works
unchanged. Only two names differ: our space is the decoder's silence token and our blank its
blank token, both given names no alphabet symbol can collide with (symbols are one character).

With a lexicon (a file, or `auto`: every word of the LM, spelled in our alphabet) the decoder
emits only lexicon words and scores each with the word LM; words are separated by silence, so
the spellings carry no word-boundary token. Without one (`lexicon=none`) it scores tokens with
the LM as if they were words, which only a character LM makes sense of.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from asr.decoding.config import DecodeConfig
from asr.decoding.greedy import Hypothesis
from asr.errors import ConfigError
from asr.text import SPACE, Vocabulary

BLANK_TOKEN = "<blank>"
SIL_TOKEN = "<sil>"
INSTALL_HINT = 'pip install -e ".[decode]" (flashlight-text)'


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silence what native code prints on the process's stdout and stderr (file descriptors
    1 and 2, which Python's redirects do not reach)."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1), os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def decoder_tokens(vocab: Vocabulary) -> list[str]:
    """The decoder's token names in our label order: symbols, silence for space, then blank."""
    return [SIL_TOKEN if s == SPACE else s for s in vocab.symbols] + [BLANK_TOKEN]


def arpa_words(path: Path) -> list[str]:
    """The words of an ARPA file's 1-grams (without <s>, </s>, <unk>)."""
    words, in_unigrams = [], False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                if in_unigrams:
                    break
                in_unigrams = line == "\\1-grams:"
                continue
            if in_unigrams and line:
                parts = line.split()
                if len(parts) >= 2 and parts[1] not in ("<s>", "</s>", "<unk>"):
                    words.append(parts[1])
    return words


def is_arpa(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4096).lstrip().startswith(b"\\data\\")


def write_lexicon(words: list[str], vocab: Vocabulary, out: Path) -> tuple[Path, int]:
    """A lexicon spelling each word by its characters; words our alphabet cannot spell are
    left out (returns how many). The file is named by its content, so it is written once."""
    allowed = vocab.characters - {" "}
    lines = [f"{w}\t{' '.join(w)}" for w in words if w and set(w) <= allowed]
    text = "\n".join(lines) + "\n"
    path = out / f"lexicon-{hashlib.sha1(text.encode()).hexdigest()[:12]}.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path, len(words) - len(lines)


def resolve_lm(lm: str, auto_lm: Callable[[int], Path] | None, order: int) -> Path | None:
    if lm == "none":
        return None
    if lm == "auto":
        if auto_lm is None:
            raise ConfigError("decode.lm=auto needs the checkpoint's training transcripts")
        return auto_lm(order)
    path = Path(lm).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"decode.lm: no such file {path} (build one: python -m asr.lm build --ckpt <run>)"
        )
    return path


class BeamDecoder:
    """`decode=beam`. Call with one utterance's (T, C) log-probs; returns its n-best."""

    def __init__(
        self,
        cfg: DecodeConfig,
        vocab: Vocabulary,
        *,
        auto_lm: Callable[[int], Path] | None = None,
        work_dir: Path,
    ) -> None:
        try:
            from torchaudio.models.decoder import ctc_decoder
        except (ImportError, RuntimeError, OSError) as e:
            raise ConfigError(f"decode=beam needs {INSTALL_HINT}: {e}") from None
        s = cfg.settings()
        self.vocab, self.settings = vocab, s
        self.lm_path = resolve_lm(s["lm"], auto_lm, s["lm_order"])
        self.lexicon_path = self._lexicon(s["lexicon"], work_dir)
        try:
            with quiet_native_output():  # KenLM draws a progress bar on stdout per load
                self._decoder = ctc_decoder(
                    lexicon=str(self.lexicon_path) if self.lexicon_path else None,
                    tokens=decoder_tokens(vocab),
                    lm=str(self.lm_path) if self.lm_path else None,
                    nbest=s["nbest"],
                    beam_size=s["beam_size"],
                    beam_size_token=s["beam_size_token"],
                    beam_threshold=s["beam_threshold"],
                    lm_weight=s["lm_weight"],
                    word_score=s["word_score"],
                    unk_score=s["unk_score"],
                    sil_score=s["sil_score"],
                    blank_token=BLANK_TOKEN,
                    sil_token=SIL_TOKEN,
                )
        except Exception as e:  # flashlight raises RuntimeError and others for a bad LM/lexicon
            culprit = f"decode.lm {self.lm_path}" if self.lm_path else "the decoder"
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise ConfigError(
                f"{culprit} could not be loaded ({reason}): give an ARPA file or a KenLM "
                "binary, e.g. from python -m asr.lm build"
            ) from None

    def _lexicon(self, lexicon: str, work_dir: Path) -> Path | None:
        if lexicon == "none":
            return None
        if lexicon != "auto":
            path = Path(lexicon).expanduser()
            if not path.is_file():
                raise ConfigError(f"decode.lexicon: no such file {path}")
            return path
        assert self.lm_path is not None  # DecodeConfig refuses lexicon=auto without an LM
        if not is_arpa(self.lm_path):
            raise ConfigError(
                f"decode.lexicon=auto reads the words of an ARPA LM, and {self.lm_path} is not "
                "one (a KenLM binary?): give decode.lexicon=<file>"
            )
        return write_lexicon(arpa_words(self.lm_path), self.vocab, work_dir)[0]

    def __call__(self, log_probs: torch.Tensor) -> list[Hypothesis]:
        """(T, C) log-probs of one utterance's real frames -> its n-best, best first."""
        emissions = log_probs.detach().to("cpu", torch.float32).contiguous()[None]  # (1, T, C)
        lengths = torch.tensor([emissions.shape[1]], dtype=torch.int32)
        out = []
        for hyp in self._decoder(emissions, lengths)[0]:
            labels, frames = self._labels(hyp.tokens.tolist(), hyp.timesteps.tolist())
            text = " ".join(hyp.words) if self.lexicon_path else self.vocab.decode(labels)
            out.append(Hypothesis(" ".join(text.split()), labels, frames, float(hyp.score)))
        return out

    def _labels(self, tokens: list[int], steps: list[int]) -> tuple[list[int], list[int]]:
        """Token indices are our labels; drop blanks, and silence at the ends and repeated."""
        space = self.vocab.symbols.index(SPACE) if SPACE in self.vocab.symbols else -1
        labels: list[int] = []
        frames: list[int] = []
        # flashlight's token sequence starts with one extra step, so torchaudio's timesteps
        # are one frame late (measured: a label greedy emits at frame t comes back at t + 1).
        steps = [max(int(step) - 1, 0) for step in steps]
        for label, step in zip(tokens, steps, strict=True):
            if label == self.vocab.blank:
                continue
            if label == space and (not labels or labels[-1] == space):
                continue
            labels.append(label)
            frames.append(step)
        if labels and labels[-1] == space:
            labels.pop(), frames.pop()
        return labels, frames

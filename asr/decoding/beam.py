"""`decode=beam`: torchaudio's CTC beam search (flashlight-text) with an n-gram LM.

Our labels become the decoder's tokens one to one, in label order, so a custom alphabet works
unchanged. Only two names differ: our space is the decoder's silence token and our blank its
blank token, both given names no alphabet symbol can collide with (symbols are one character).

- `unit=char` (lexicon-free): the LM is a character n-gram whose "words" are the token names,
  the space being `asr.lm.WORD_BOUNDARY` = the silence token; the decoder scores every token
  it emits with it. It must be given the token list as `lm_dict`, in label order: without one,
  torchaudio builds the LM's dictionary in hash order and every character is scored as some
  other character (fairseq met the same: facebookresearch/fairseq#5109).
- `unit=word`: with a lexicon (a file, or `auto`: every word of the LM, spelled in our
  alphabet) the decoder emits only lexicon words and scores each with the word LM; words are
  separated by silence, so the spellings carry no word-boundary token.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from asr.decoding.config import DecodeConfig
from asr.decoding.greedy import Hypothesis
from asr.disk import write_atomic
from asr.errors import ConfigError
from asr.lm import WORD_BOUNDARY, arpa_unigrams, is_arpa, known_words, lm_unit
from asr.text import SPACE, Vocabulary

BLANK_TOKEN = "<blank>"
SIL_TOKEN = WORD_BOUNDARY  # a character LM spells the space as the silence token
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


def write_lexicon(words: list[str], vocab: Vocabulary, out: Path) -> tuple[Path, int]:
    """A lexicon spelling each word by its characters; words our alphabet cannot spell are
    left out (returns how many). The file is named by its content, so it is written once."""
    allowed = vocab.characters - {" "}
    lines = [f"{w}\t{' '.join(w)}" for w in words if w and set(w) <= allowed]
    return _write_named(out, "lexicon", "\n".join(lines) + "\n"), len(words) - len(lines)


def write_token_dict(vocab: Vocabulary, out: Path) -> Path:
    """The lexicon-free decoder's `lm_dict`: its token names, one per line, in label order."""
    return _write_named(out, "tokens", "\n".join(decoder_tokens(vocab)) + "\n")


def _write_named(out: Path, kind: str, text: str) -> Path:
    """`text` in `out/<kind>-<hash of text>.txt`, written once (through a temporary file)."""
    data = text.encode("utf-8")
    path = out / f"{kind}-{hashlib.sha1(data).hexdigest()[:12]}.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    return path


def resolve_lm(
    lm: str, auto_lm: Callable[[int, str], Path] | None, *, order: int, unit: str
) -> Path | None:
    """The LM file `decode.lm` names: none, `auto` (built by `auto_lm(order, unit)`), or a file
    of the mode's unit (an ARPA file says which; a KenLM binary is taken on trust)."""
    if lm == "none":
        return None
    if lm == "auto":
        if auto_lm is None:
            raise ConfigError("decode.lm=auto needs the checkpoint's training transcripts")
        return auto_lm(order, unit)
    path = Path(lm).expanduser()
    build = f"python -m asr.lm build --unit {unit} --ckpt <run>"
    if not path.is_file():
        raise ConfigError(f"decode.lm: no such file {path} (build one: {build})")
    found = lm_unit(path)
    if found is not None and found != unit:
        raise ConfigError(
            f"decode.lm {path} is a {found} LM and decode.unit is {unit}: give decode.unit="
            f"{found}, or an LM of {unit}s ({build})"
        )
    return path


class BeamDecoder:
    """`decode=beam`. Call with one utterance's (T, C) log-probs; returns its n-best."""

    def __init__(
        self,
        cfg: DecodeConfig,
        vocab: Vocabulary,
        *,
        auto_lm: Callable[[int, str], Path] | None = None,
        work_dir: Path,
    ) -> None:
        try:
            from torchaudio.models.decoder import ctc_decoder
        except (ImportError, RuntimeError, OSError) as e:
            raise ConfigError(f"decode=beam needs {INSTALL_HINT}: {e}") from None
        s = cfg.settings()
        self.vocab, self.settings = vocab, s
        self.lm_path = resolve_lm(s["lm"], auto_lm, order=s["lm_order"], unit=s["unit"])
        self.lexicon_path = self._lexicon(s["lexicon"], work_dir)
        lexicon_free_lm = self.lm_path is not None and self.lexicon_path is None
        lm_dict = write_token_dict(vocab, work_dir) if lexicon_free_lm else None
        try:
            with quiet_native_output():  # KenLM draws a progress bar on stdout per load
                self._decoder = ctc_decoder(
                    lexicon=str(self.lexicon_path) if self.lexicon_path else None,
                    tokens=decoder_tokens(vocab),
                    lm=str(self.lm_path) if self.lm_path else None,
                    lm_dict=str(lm_dict) if lm_dict else None,
                    nbest=s["nbest"],
                    beam_size=s["beam_size"],
                    beam_size_token=s["beam_size_token"],
                    beam_threshold=s["beam_threshold"],
                    lm_weight=s["lm_weight"],
                    word_score=s.get("word_score", 0.0),
                    unk_score=s.get("unk_score", -math.inf),
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
        return write_lexicon(arpa_unigrams(self.lm_path), self.vocab, work_dir)[0]

    def known_words(self) -> set[str] | None:
        """The words the LM has seen (`asr.lm.known_words`), for out-of-vocabulary rates."""
        return known_words(self.lm_path) if self.lm_path else None

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

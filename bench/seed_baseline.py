"""The seed's training recipe, re-implemented as the benchmark's baseline.

Self-contained the way the seed was: its own model class written the seed's way, its own
features, batches, loop and greedy decoder. Only reading manifests (`asr.data.manifest`), text
normalization (`asr.text`) and scoring (`asr.metrics`) come from the product, so both sides see
the same utterances and CER is computed identically.

Faithful to the seed (the "end-to-end speech recognition in PyTorch" DeepSpeech2 tutorial's
recipe, which `asr.model` reproduces parameter for parameter):
- the model: stem conv, residual CNN blocks (LayerNorm over features, GELU, dropout, conv),
  a linear layer, bidirectional GRUs, a two-layer classifier; no packing, no masking: a short
  utterance's backward GRU starts in its batch's padding, as in the seed;
- features computed in the training process (the seed's collate function; a worker on CUDA,
  as the seed had), shuffled fixed-size batches padded to the longest utterance;
- SpecAugment with torchaudio's masks on the mel spectrogram, drawn from the global RNG;
- CTC input lengths T // 2, AdamW, a linear one-cycle schedule, `loss.item()` every step (the
  seed logged every step), no gradient clipping.

The seed's two defects are fixed, so the comparison is about the pipeline and not the bugs:
- every GRU layer is batch-first (the seed's later layers scanned the batch axis as time);
- the mel spectrogram is logged: log(mel + 1e-6), taken after padding, so padding and masks
  stay silence as they were in the seed's linear spectrogram.
And CTC runs with `zero_infinity` (the seed's runs went NaN on fast speech).

The STFT settings default to the product's (hop 160, n_fft 1024): the same frames per second
of audio, so a throughput ratio compares equal work. The seed's MelSpectrogram defaults (hop 200,
n_fft 400) are one flag away: `--n-fft 400 --win-length 400 --hop-length 200`.

python bench/seed_baseline.py train --train-manifest T --dev-manifest D --out result.json ...
python bench/seed_baseline.py decode --ckpt model.pt --manifest D --out result.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from asr.data.manifest import read_manifest
from asr.metrics import cer, wer
from asr.text import Vocabulary, normalize

# ---------------------------------------------------------------------------- the seed's model


class CNNLayerNorm(nn.Module):
    def __init__(self, n_feats):
        super().__init__()
        self.layer_norm = nn.LayerNorm(n_feats)

    def forward(self, x):
        # x (batch, channel, feature, time)
        x = x.transpose(2, 3).contiguous()  # (batch, channel, time, feature)
        x = self.layer_norm(x)
        return x.transpose(2, 3).contiguous()  # (batch, channel, feature, time)


class ResidualCNN(nn.Module):
    def __init__(self, in_channels, out_channels, kernel, stride, dropout, n_feats):
        super().__init__()
        self.cnn1 = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2)
        self.cnn2 = nn.Conv2d(out_channels, out_channels, kernel, stride, padding=kernel // 2)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.layer_norm1 = CNNLayerNorm(n_feats)
        self.layer_norm2 = CNNLayerNorm(n_feats)

    def forward(self, x):
        residual = x  # (batch, channel, feature, time)
        x = self.layer_norm1(x)
        x = F.gelu(x)
        x = self.dropout1(x)
        x = self.cnn1(x)
        x = self.layer_norm2(x)
        x = F.gelu(x)
        x = self.dropout2(x)
        x = self.cnn2(x)
        x += residual
        return x


class BidirectionalGRU(nn.Module):
    def __init__(self, rnn_dim, hidden_size, dropout, batch_first):
        super().__init__()
        self.BiGRU = nn.GRU(
            input_size=rnn_dim,
            hidden_size=hidden_size,
            num_layers=1,
            batch_first=batch_first,
            bidirectional=True,
        )
        self.layer_norm = nn.LayerNorm(rnn_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.layer_norm(x)
        x = F.gelu(x)
        x, _ = self.BiGRU(x)
        x = self.dropout(x)
        return x


class SpeechRecognitionModel(nn.Module):
    def __init__(
        self, n_cnn_layers, n_rnn_layers, rnn_dim, n_class, n_feats, stride=2, dropout=0.1
    ):
        super().__init__()
        n_feats = n_feats // 2
        self.cnn = nn.Conv2d(1, 32, 3, stride=stride, padding=3 // 2)
        self.rescnn_layers = nn.Sequential(
            *[
                ResidualCNN(32, 32, kernel=3, stride=1, dropout=dropout, n_feats=n_feats)
                for _ in range(n_cnn_layers)
            ]
        )
        self.fully_connected = nn.Linear(n_feats * 32, rnn_dim)
        self.birnn_layers = nn.Sequential(
            *[
                BidirectionalGRU(
                    rnn_dim=rnn_dim if i == 0 else rnn_dim * 2,
                    hidden_size=rnn_dim,
                    dropout=dropout,
                    batch_first=True,  # the seed: batch_first=(i == 0), its first defect
                )
                for i in range(n_rnn_layers)
            ]
        )
        self.classifier = nn.Sequential(
            nn.Linear(rnn_dim * 2, rnn_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(rnn_dim, n_class),
        )

    def forward(self, x):
        x = self.cnn(x)
        x = self.rescnn_layers(x)
        sizes = x.size()
        x = x.view(sizes[0], sizes[1] * sizes[2], sizes[3])  # (batch, feature, time)
        x = x.transpose(1, 2)  # (batch, time, feature)
        x = self.fully_connected(x)
        x = self.birnn_layers(x)
        x = self.classifier(x)
        return x


# ------------------------------------------------------------------------ the seed's data path

LOG_EPS = 1e-6


class Utterances(torch.utils.data.Dataset):
    """(wave, labels, duration) per manifest line whose text fits the alphabet."""

    def __init__(self, manifest: str, vocab: Vocabulary, language: str, sample_rate: int):
        self.rows = []
        for e in read_manifest(manifest):
            norm = normalize(e.text, language, vocab)
            if norm.text and not norm.dropped:
                self.rows.append((e.audio_path, norm.text, vocab.encode(norm.text), e.duration))
        self.sample_rate = sample_rate

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        path, text, labels, duration = self.rows[i]
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        wave = torch.from_numpy(data.mean(axis=1))
        if sr != self.sample_rate:
            wave = torchaudio.functional.resample(wave, sr, self.sample_rate)
        return wave, text, labels, duration


class DataProcessing:
    """The seed's `data_processing` collate: mel (+ masks in training), padded to the longest."""

    def __init__(self, args, train: bool):
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=args.sample_rate,
            n_mels=args.n_mels,
            n_fft=args.n_fft,
            win_length=args.win_length,
            hop_length=args.hop_length,
        )
        masks = []
        if train:
            masks += [torchaudio.transforms.FrequencyMasking(args.freq_width)] * args.freq_masks
            masks += [
                torchaudio.transforms.TimeMasking(args.time_width, p=args.time_width_ratio)
            ] * args.time_masks
        self.transforms = nn.Sequential(self.mel, *masks)

    def __call__(self, data):
        spectrograms, labels, input_lengths, label_lengths, texts, seconds = [], [], [], [], [], 0.0
        for wave, text, label, duration in data:
            spec = self.transforms(wave.unsqueeze(0)).squeeze(0).transpose(0, 1)  # (T, F)
            spectrograms.append(spec)
            labels.append(torch.tensor(label))
            input_lengths.append(spec.shape[0] // 2)
            label_lengths.append(len(label))
            texts.append(text)
            seconds += duration
        spectrograms = nn.utils.rnn.pad_sequence(spectrograms, batch_first=True)  # (B, T, F)
        spectrograms = torch.log(spectrograms + LOG_EPS)  # the fix: log, padding stays silence
        spectrograms = spectrograms.unsqueeze(1).transpose(2, 3)  # (B, 1, F, T)
        labels = nn.utils.rnn.pad_sequence(labels, batch_first=True)
        return spectrograms, labels, input_lengths, label_lengths, texts, seconds


def make_loader(dataset, args, train: bool, device: torch.device):
    # The seed: {'num_workers': 1, 'pin_memory': True} if use_cuda else {}
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=train,
        collate_fn=DataProcessing(args, train),
        **kwargs,
    )


def greedy_decoder(output, input_lengths, vocab: Vocabulary, collapse_repeated=True):
    """The seed's GreedyDecoder, over each utterance's CTC input frames."""
    arg_maxes = torch.argmax(output, dim=2)  # (B, T)
    decodes = []
    for i, args in enumerate(arg_maxes.cpu()):
        decode = []
        args = args[: input_lengths[i]].tolist()
        for j, index in enumerate(args):
            if index != vocab.blank:
                if collapse_repeated and j != 0 and index == args[j - 1]:
                    continue
                decode.append(index)
        decodes.append(" ".join(vocab.decode(decode).split()))
    return decodes


# ---------------------------------------------------------------------------- train and decode


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def onecycle_lr(p: float, max_lr: float, pct_start=0.3, div_factor=25.0, final_div=1e4) -> float:
    """torch's OneCycleLR(anneal_strategy="linear") at progress p in [0, 1]. A function of
    progress rather than the scheduler object, so that a wall-clock budget anneals fully (the
    scheduler needs the step count in advance)."""
    start = max_lr / div_factor
    end = start / final_div
    p = min(max(p, 0.0), 1.0)
    if p < pct_start:
        return start + (max_lr - start) * p / pct_start
    return max_lr + (end - max_lr) * (p - pct_start) / (1 - pct_start)


def build_model(a) -> SpeechRecognitionModel:
    return SpeechRecognitionModel(a.n_cnn, a.n_rnn, a.rnn_dim, a.n_class, a.n_mels, 2, a.dropout)


@torch.no_grad()
def test(model, loader, vocab: Vocabulary, device: torch.device) -> dict:
    """The seed's test(): loss, greedy transcripts, corpus CER/WER; and how long it took."""
    model.eval()
    criterion = nn.CTCLoss(blank=vocab.blank, zero_infinity=True)
    refs, hyps, loss_sum, n, seconds = [], [], 0.0, 0, 0.0
    sync(device)
    start = time.perf_counter()
    for spectrograms, labels, input_lengths, label_lengths, texts, audio in loader:
        spectrograms, labels = spectrograms.to(device), labels.to(device)
        output = F.log_softmax(model(spectrograms), dim=2)  # (B, T, C)
        loss = criterion(output.transpose(0, 1), labels, input_lengths, label_lengths)
        loss_sum += loss.item() * len(texts)
        hyps += greedy_decoder(output, input_lengths, vocab)
        refs += texts
        n += len(texts)
        seconds += audio
    sync(device)
    wall = time.perf_counter() - start
    model.train()
    return {
        "cer": cer(refs, hyps),
        "wer": wer(refs, hyps),
        "loss": loss_sum / max(n, 1),
        "utterances": n,
        "audio_seconds": seconds,
        "seconds": wall,
        "rtf": wall / max(seconds, 1e-9),
    }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def seed_step(model: nn.Module, optimizer, criterion, batch: tuple, lr: float) -> float:
    """The body of the seed's training loop, on a batch already on the device: its learning
    rate, zero_grad, forward, CTC with host lengths, backward, AdamW, and the loss read on the
    host, as the seed did at every step. bench/gpu_steps.py times this same function."""
    spectrograms, labels, input_lengths, label_lengths = batch
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad()
    output = F.log_softmax(model(spectrograms), dim=2)  # (B, T, C)
    loss = criterion(output.transpose(0, 1), labels, input_lengths, label_lengths)
    loss.backward()
    optimizer.step()
    return loss.item()


def train(a) -> dict:
    device = pick_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    vocab = Vocabulary()
    a.n_class = vocab.n_class
    train_set = Utterances(a.train_manifest, vocab, a.language, a.sample_rate)
    dev_set = None
    if a.dev_manifest:
        dev_set = Utterances(a.dev_manifest, vocab, a.language, a.sample_rate)
    train_loader = make_loader(train_set, a, True, device)
    model = build_model(a).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), a.lr)
    criterion = nn.CTCLoss(blank=vocab.blank, zero_infinity=True).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"seed baseline: {n_params:,} parameters on {device}, {len(train_set)} utterances")

    budget_s = a.max_minutes * 60 if a.max_minutes else math.inf
    windows, evals = [], []
    step, epoch, nonfinite = 0, 0, 0
    start = time.perf_counter()
    win_start, win_audio, win_steps = start, 0.0, 0

    def progress() -> float:
        p = (time.perf_counter() - start) / budget_s
        return max(p, step / a.max_steps if a.max_steps else 0.0)

    def evaluate() -> None:
        if dev_set is not None:
            dev = test(model, make_loader(dev_set, a, False, device), vocab, device)
            evals.append({"step": step, "epoch": epoch, **dev})
            print(f"step {step} epoch {epoch}: dev CER {dev['cer']:.4f} WER {dev['wer']:.4f}")

    model.train()
    done = False
    while not done:
        for spectrograms, labels, input_lengths, label_lengths, _texts, audio in train_loader:
            spectrograms, labels = spectrograms.to(device), labels.to(device)
            batch = (spectrograms, labels, input_lengths, label_lengths)
            loss_value = seed_step(
                model, optimizer, criterion, batch, onecycle_lr(progress(), a.lr)
            )
            nonfinite += not math.isfinite(loss_value)
            step += 1
            win_steps += 1
            win_audio += audio
            if step % a.log_every == 0:
                sync(device)
                now = time.perf_counter()
                windows.append(
                    {"step": step, "steps": win_steps, "audio_seconds": win_audio,
                     "seconds": now - win_start, "loss": loss_value}
                )  # fmt: skip
                print(f"step {step}: loss {loss_value:.3f}, "
                      f"{win_audio / (now - win_start):.2f} audio s/s")  # fmt: skip
                win_start, win_audio, win_steps = now, 0.0, 0
            if progress() >= 1.0:
                done = True
                break
        else:
            epoch += 1
            if a.eval_every_epoch:
                evaluate()
                win_start, win_audio, win_steps = time.perf_counter(), 0.0, 0
            done = progress() >= 1.0
    train_wall = time.perf_counter() - start
    if dev_set is not None and (not evals or evals[-1]["step"] != step):
        evaluate()  # the budget's end: one more dev score (outside the budget)
    if a.save:
        torch.save({"model": model.state_dict(), "args": vars(a)}, a.save)
    return {
        "side": "baseline",
        "n_params": n_params,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "steps": step,
        "epochs": epoch,
        "train_wall_seconds": train_wall,
        "nonfinite_steps": nonfinite,
        "windows": windows,
        "evals": evals,
        "best_dev_cer": min((e["cer"] for e in evals), default=None),
        "final_dev_cer": evals[-1]["cer"] if evals else None,
        "peak_rss_mib": peak_rss_mib(),
    }


def decode(a) -> dict:
    device = pick_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    state = torch.load(a.ckpt, map_location="cpu", weights_only=True)  # never runs code
    saved = argparse.Namespace(**state["args"])
    saved.batch_size = a.batch_size or saved.batch_size
    model = build_model(saved)
    model.load_state_dict(state["model"])
    model.to(device)
    vocab = Vocabulary()
    dataset = Utterances(a.manifest, vocab, saved.language, saved.sample_rate)
    result = test(model, make_loader(dataset, saved, False, device), vocab, device)
    print(
        f"seed baseline decode: CER {result['cer']:.4f} WER {result['wer']:.4f} "
        f"RTF {result['rtf']:.4f} on {result['utterances']} utterances"
    )
    return {"side": "baseline", "device": str(device), **result, "peak_rss_mib": peak_rss_mib()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the seed recipe; write windows and dev scores")
    t.add_argument("--train-manifest", required=True)
    t.add_argument("--dev-manifest")
    t.add_argument("--language", default="es")
    t.add_argument("--n-cnn", type=int, default=3)
    t.add_argument("--n-rnn", type=int, default=5)
    t.add_argument("--rnn-dim", type=int, default=512)
    t.add_argument("--dropout", type=float, default=0.1)
    t.add_argument("--batch-size", type=int, default=10)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--max-minutes", type=float)
    t.add_argument("--log-every", type=int, default=20)
    t.add_argument("--eval-every-epoch", action="store_true", help="dev CER after each epoch")
    t.add_argument("--sample-rate", type=int, default=16000)
    t.add_argument("--n-mels", type=int, default=128)
    t.add_argument("--n-fft", type=int, default=1024)
    t.add_argument("--win-length", type=int, default=400)
    t.add_argument("--hop-length", type=int, default=160)
    t.add_argument("--freq-masks", type=int, default=2)
    t.add_argument("--freq-width", type=int, default=15)
    t.add_argument("--time-masks", type=int, default=2)
    t.add_argument("--time-width", type=int, default=35)
    t.add_argument("--time-width-ratio", type=float, default=0.1)
    t.add_argument("--save", help="write the trained weights here")
    d = sub.add_parser("decode", help="the seed's test loop over a manifest: CER and RTF")
    d.add_argument("--ckpt", required=True)
    d.add_argument("--manifest", required=True)
    d.add_argument("--batch-size", type=int)
    for q in (t, d):
        q.add_argument("--device", default="auto")
        q.add_argument("--threads", type=int)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--out", help="write the result as JSON here")
    a = p.parse_args(argv)
    if a.command == "train" and not (a.max_steps or a.max_minutes):
        p.error("set --max-steps or --max-minutes")
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    result = train(a) if a.command == "train" else decode(a)
    result["pid"] = os.getpid()
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

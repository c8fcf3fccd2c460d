"""Build a tiny, random-weight MusicGen checkpoint on disk for tests.

The real checkpoints cannot be downloaded here, so tests make a structurally faithful miniature
(T5 text encoder + EnCodec at 32 kHz / 50 frames per second + 4-codebook decoder) from config
objects, a tiny T5 tokenizer built from an in-memory vocabulary, and a ``MusicgenProcessor``;
everything is ``save_pretrained()``-ed so the backend loads it through the exact
``from_pretrained`` path the real model uses.
"""

from __future__ import annotations

import json
from pathlib import Path

# Words the tiny tokenizer knows as whole pieces; anything else falls back to single letters.
_WORDS = (
    "lofi calm slow fast piano guitar drums bass synth ambient jazz rock pop electronic music "
    "with and a the of in for at bpm beat soft loud happy sad rainy night warm upbeat chill "
    "orchestral cinematic strings melody tempo medium energetic relaxing dreamy"
).split()

TINY_CODEBOOK_SIZE = 16  # 4 bits per code; 4 codebooks at 50 frames/s → 0.8 kbps
TINY_NUM_CODEBOOKS = 4


def _tiny_tokenizer():
    from transformers import T5Tokenizer

    # Unigram vocabulary: specials first (T5 uses pad=0, eos=1, unk=2), then whole words, then letters
    # and digits so every prompt tokenises to something.
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("▁" + word, -2.0) for word in _WORDS]
    vocab += [("▁", -3.0)]
    vocab += [(ch, -5.0) for ch in "abcdefghijklmnopqrstuvwxyz0123456789-,.'"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_tiny_musicgen(path: str | Path) -> Path:
    """Write a tiny random MusicGen (weights + processor + generation config) to ``path``."""
    import torch
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        GenerationConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenProcessor,
        T5Config,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _tiny_tokenizer()

    text_config = T5Config(
        vocab_size=len(tokenizer),
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
    )
    # Same sampling rate and hop (8·5·4·4 = 640 → 50 frames/s) as musicgen-small, tiny widths.
    audio_config = EncodecConfig(
        sampling_rate=32_000,
        audio_channels=1,
        upsampling_ratios=[8, 5, 4, 4],
        num_filters=2,
        hidden_size=8,
        num_lstm_layers=1,
        codebook_size=TINY_CODEBOOK_SIZE,
        target_bandwidths=[0.8],
        chunk_length_s=None,
        overlap=None,
        normalize=False,
        compress=2,
    )
    decoder_config = MusicgenDecoderConfig(
        vocab_size=TINY_CODEBOOK_SIZE,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        ffn_dim=64,
        num_codebooks=TINY_NUM_CODEBOOKS,
        pad_token_id=TINY_CODEBOOK_SIZE,
        bos_token_id=TINY_CODEBOOK_SIZE,
        max_position_embeddings=2048,
    )
    config = MusicgenConfig(text_encoder=text_config, audio_encoder=audio_config, decoder=decoder_config)

    torch.manual_seed(0)  # the same tiny weights every time
    model = MusicgenForConditionalGeneration(config)
    model.eval()
    # EnCodec codebooks start as zeros (they are learned by k-means in training), which would make
    # every code decode to the same audio; random codebooks make different codes sound different.
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
    # Mirrors facebook/musicgen-small's generation_config.json (special ids scaled to the tiny codebook).
    model.generation_config = GenerationConfig(
        bos_token_id=TINY_CODEBOOK_SIZE,
        pad_token_id=TINY_CODEBOOK_SIZE,
        decoder_start_token_id=TINY_CODEBOOK_SIZE,
        do_sample=True,
        guidance_scale=3.0,
        max_length=1500,
        top_k=250,
    )
    model.save_pretrained(path)

    feature_extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=32_000, padding_value=0.0)
    MusicgenProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(path)
    (path / "TINY_MODEL.json").write_text(json.dumps({"why": "random weights, for tests only"}))
    return path


if __name__ == "__main__":  # python tests/tiny_musicgen.py OUT_DIR
    import sys

    print(build_tiny_musicgen(sys.argv[1] if len(sys.argv) > 1 else "tiny-musicgen"))

"""Build the real ``facebook/musicgen-small`` architecture with random weights, saved to a folder.

The weights cannot be downloaded here, and generation speed does not depend on weight values, so
the benchmarks time a checkpoint with the exact shapes of musicgen-small (587.6 M parameters):
T5-base text encoder, EnCodec 32 kHz, 24-layer 1024-wide decoder with 4 codebooks of 2048.
It is saved with ``save_pretrained`` so the backend loads it through its normal path.
"""

from __future__ import annotations

import json
from pathlib import Path

# A small whole-word vocabulary: prompts tokenise to realistic lengths; the model's vocab_size stays
# 32128 (T5-base), so the embedding tables have their real size.
_WORDS = (
    "lofi calm slow fast piano guitar drums bass synth ambient jazz rock pop electronic music with and a "
    "the of in for at bpm beat soft loud happy sad rainy night warm upbeat chill orchestral cinematic "
    "strings melody tempo medium energetic relaxing dreamy background track major minor key"
).split()

MARKER = "RANDOM_MUSICGEN_SMALL.json"


def _tokenizer():
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("▁" + w, -2.0) for w in _WORDS] + [("▁", -3.0)]
    vocab += [(ch, -5.0) for ch in "abcdefghijklmnopqrstuvwxyz0123456789-,.'"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_random_musicgen_small(path: str | Path) -> Path:
    """Write (once) a random-weight musicgen-small checkpoint to ``path`` and return it."""
    path = Path(path)
    if (path / MARKER).is_file():
        return path
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

    path.mkdir(parents=True, exist_ok=True)
    text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    audio = EncodecConfig(
        sampling_rate=32_000,
        audio_channels=1,
        upsampling_ratios=[8, 5, 4, 4],
        num_filters=64,
        hidden_size=128,
        num_lstm_layers=2,
        codebook_size=2048,
        target_bandwidths=[2.2],
        chunk_length_s=None,
        overlap=None,
        normalize=False,
        compress=2,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        ffn_dim=4096,
        num_codebooks=4,
        pad_token_id=2048,
        bos_token_id=2048,
        max_position_embeddings=2048,
    )
    config = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    torch.manual_seed(0)
    model = MusicgenForConditionalGeneration(config).eval()
    with torch.no_grad():  # zero codebooks would make every code decode alike
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
    model.generation_config = GenerationConfig(
        bos_token_id=2048,
        pad_token_id=2048,
        decoder_start_token_id=2048,
        do_sample=True,
        guidance_scale=3.0,
        max_length=1500,
        top_k=250,
    )
    model.save_pretrained(path)
    extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=32_000, padding_value=0.0)
    MusicgenProcessor(feature_extractor=extractor, tokenizer=_tokenizer()).save_pretrained(path)
    params = sum(p.numel() for p in model.parameters())
    (path / MARKER).write_text(json.dumps({"why": "random weights, benchmarks only", "parameters": params}))
    return path


if __name__ == "__main__":  # python bench/_musicgen_random.py OUT_DIR
    import sys

    print(
        build_random_musicgen_small(
            sys.argv[1] if len(sys.argv) > 1 else "/tmp/textunes-musicgen-small-random"
        )
    )

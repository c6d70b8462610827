"""Speech building blocks shared by the speech benchmarks: WAV files of the LibriSpeech layouts (audio.py)."""

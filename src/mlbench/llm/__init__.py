"""Building blocks the language-model benchmarks share: Llama models built from a config (initialised, saved and
loaded as a Hugging Face directory), byte-level BPE tokenizers trained here, token windows over indexed token
files, the offline text corpora, and the model FLOPs of a transformer. No benchmark is named here; each
benchmark's definition supplies the numbers."""

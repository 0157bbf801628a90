"""seq2seq: a bidirectional-GRU encoder / attention-LSTM decoder NMT toolkit."""

__version__ = "0.1.0"

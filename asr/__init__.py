"""asr: streaming speech recognition toolkit."""

"""Model parts: encoder, decoders, CTC head, and the composed ASRModel."""

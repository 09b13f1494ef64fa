"""Audio in and out (decoding, encoding, atomic writes) and job planning (inputs, output names)."""

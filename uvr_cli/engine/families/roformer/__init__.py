"""BS-RoFormer and Mel-Band RoFormer: the networks of MSST's community checkpoints, loaded by their own keys."""

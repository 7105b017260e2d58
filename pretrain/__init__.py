"""CLIP-style pretraining: contrastive losses, optimizer and the training loop that calls the curator."""

"""What pages call to look at a trained run."""

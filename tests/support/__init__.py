"""What the test tiers share: helpers (waiting on processes, reading metrics), fixtures and
factories used by more than one tier or file, and page openers for the AppTest tests. Nothing
here is collected as a test."""

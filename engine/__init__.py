"""The workbench library: data, models, one Trainer, analysis and the run store. No UI here."""

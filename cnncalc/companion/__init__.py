"""The textbook companion: the chapter's worked examples, explain, feature-map pictures."""

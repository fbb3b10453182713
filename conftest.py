"""Makes the repository root importable so tests can `from examples.art_flow import ArtFlow`."""

"""Helpers for the vae-overlay notebooks."""

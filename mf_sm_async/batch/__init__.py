"""Batch inference helpers: payload codecs and the split of a frame into payloads."""

"""Readers and writers: images, panels and plots; every file is written atomically."""

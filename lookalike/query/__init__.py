"""Queries: search parameters and anchors, and the text, label, colour and near-duplicate searches."""

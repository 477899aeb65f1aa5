"""Retention: which tags to keep (pure policies), planned so nothing kept loses anything."""

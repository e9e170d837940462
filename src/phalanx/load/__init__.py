"""Definition loaders: files on disk become model objects.

Every loader collects every problem it finds (file, line, key, message)
and raises them together, so that a user fixes a broken repo in one pass.
"""

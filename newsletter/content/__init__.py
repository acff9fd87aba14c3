"""The site's content: posts from feeds and CMS pushes, their sanitising, and digest selection.

Which posts go into a digest, and which of them to each reader.
"""

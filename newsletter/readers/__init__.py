"""The reader's path: signup, double opt-in, preferences, unsubscribe, consent and suppression.

Also the signed tokens and links mailed to readers, and the signup mails themselves.
"""

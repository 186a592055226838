"""One-off generators for developers (see README.md here); not part of the installed package."""

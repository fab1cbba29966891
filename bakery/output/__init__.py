"""The output tree: the files a render makes (OutputFile), their atomic write, and where things
are kept beside it."""
